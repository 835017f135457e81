"""Conversion between domain objects and SQL rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from taskyard.scheduler.domain import (
    Artifact,
    ArtifactFile,
    Attempt,
    Result,
    Role,
    State,
    Tenant,
    Token,
    Worker,
    WorkError,
    WorkRequest,
)

#: The columns fixed at submit: a transition never writes them.
FIXED_COLUMNS = frozenset(
    {
        "id",
        "task_name",
        "task_data_json",
        "created_at",
        "idempotency_key",
        "trace_context_json",
        "owner",
        "tenant",
    }
)


def work_request_row(work_request: WorkRequest) -> dict[str, Any]:
    """The row of a work request."""
    return {
        **changing_columns(work_request),
        "id": work_request.id,
        "task_name": work_request.task_name,
        "task_data_json": work_request.task_data_json,
        "idempotency_key": work_request.idempotency_key or None,
        "trace_context_json": json.dumps(work_request.trace_context),
        "created_at": work_request.created_at,
        "owner": work_request.owner,
        "tenant": work_request.tenant,
    }


def changing_columns(work_request: WorkRequest) -> dict[str, Any]:
    """The columns of a work request's row that a transition may change
    (all but `FIXED_COLUMNS`)."""
    error = work_request.error
    return {
        "priority": work_request.priority,
        "queue_key": work_request.queue_key,
        "state": work_request.state.value,
        "result": work_request.result.value,
        "output_json": work_request.output_json,
        "error_reason": error.reason if error else None,
        "error_type": error.type if error else None,
        "error_message": error.message if error else None,
        "attempt": work_request.attempt,
        "max_attempts": work_request.max_attempts,
        "worker_name": work_request.worker_name,
        "timeout_seconds": work_request.timeout_seconds,
        "assigned_at": work_request.assigned_at,
        "started_at": work_request.started_at,
        "completed_at": work_request.completed_at,
        "updated_at": work_request.updated_at,
        "abort_requested_at": work_request.abort_requested_at,
        "details_json": work_request.details_json,
        "waiting": work_request.waiting,
    }


def work_request_from(row: Mapping[Any, Any]) -> WorkRequest:
    """The work request of a row."""
    error = None
    if row["error_reason"] is not None:
        error = WorkError(row["error_reason"], row["error_message"] or "", row["error_type"] or "")
    return WorkRequest(
        id=row["id"],
        task_name=row["task_name"],
        task_data_json=row["task_data_json"],
        priority=row["priority"],
        queue_key=row["queue_key"],
        state=State(row["state"]),
        result=Result(row["result"]),
        output_json=row["output_json"],
        error=error,
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        worker_name=row["worker_name"],
        timeout_seconds=row["timeout_seconds"],
        idempotency_key=row["idempotency_key"] or "",
        trace_context=json.loads(row["trace_context_json"]),
        created_at=row["created_at"],
        assigned_at=row["assigned_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        abort_requested_at=row["abort_requested_at"],
        owner=row["owner"],
        tenant=row["tenant"],
        details_json=row["details_json"],
        waiting=row["waiting"],
    )


def worker_row(worker: Worker) -> dict[str, Any]:
    """The row of a worker."""
    return {
        "name": worker.name,
        "token_sha256": worker.token_sha256,
        "enabled": worker.enabled,
        "slots": worker.slots,
        "dynamic_metadata_json": json.dumps(worker.dynamic_metadata),
        "static_metadata_json": json.dumps(worker.static_metadata),
        "allowed_tasks_json": json.dumps(list(worker.allowed_tasks)),
        "denied_tasks_json": json.dumps(list(worker.denied_tasks)),
        "registered_at": worker.registered_at,
        "last_seen_at": worker.last_seen_at,
        "scheduler": worker.scheduler,
        "tenants_json": json.dumps(list(worker.tenants)),
    }


def worker_from(row: Mapping[Any, Any]) -> Worker:
    """The worker of a row."""
    return Worker(
        name=row["name"],
        token_sha256=row["token_sha256"],
        enabled=row["enabled"],
        slots=row["slots"],
        dynamic_metadata=json.loads(row["dynamic_metadata_json"]),
        static_metadata=json.loads(row["static_metadata_json"]),
        allowed_tasks=tuple(json.loads(row["allowed_tasks_json"])),
        denied_tasks=tuple(json.loads(row["denied_tasks_json"])),
        registered_at=row["registered_at"],
        last_seen_at=row["last_seen_at"],
        scheduler=row["scheduler"],
        tenants=tuple(json.loads(row["tenants_json"])),
    )


def token_row(token: Token) -> dict[str, Any]:
    """The row of a token."""
    return {
        "id": token.id,
        "secret_sha256": token.secret_sha256,
        "role": token.role.value,
        "description": token.description,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "used_at": token.used_at,
        "revoked_at": token.revoked_at,
        "tenant": token.tenant,
    }


def token_from(row: Mapping[Any, Any]) -> Token:
    """The token of a row."""
    return Token(
        id=row["id"],
        secret_sha256=row["secret_sha256"],
        role=Role(row["role"]),
        description=row["description"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
        tenant=row["tenant"],
    )


def artifact_row(artifact: Artifact) -> dict[str, Any]:
    """The row of an artifact (its files are rows of their own)."""
    return {
        "id": artifact.id,
        "category": artifact.category,
        "data_json": artifact.data_json,
        "work_request_id": artifact.work_request_id,
        "created_at": artifact.created_at,
        "expires_at": artifact.expires_at,
        "complete": artifact.complete,
        "created_by": artifact.created_by,
        "idempotency_key": artifact.idempotency_key or None,
        "tenant": artifact.tenant,
    }


def artifact_file_rows(artifact: Artifact) -> list[dict[str, Any]]:
    """The rows of an artifact's files."""
    return [
        {
            "artifact_id": artifact.id,
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
            "content_type": f.content_type,
            "complete": f.complete,
        }
        for f in artifact.files
    ]


def artifact_from(row: Mapping[Any, Any], files: list[Mapping[Any, Any]]) -> Artifact:
    """The artifact of a row and its file rows."""
    return Artifact(
        id=row["id"],
        category=row["category"],
        data_json=row["data_json"],
        work_request_id=row["work_request_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        created_by=row["created_by"],
        idempotency_key=row["idempotency_key"] or "",
        tenant=row["tenant"],
        files=tuple(
            ArtifactFile(f["path"], f["size"], f["sha256"], f["content_type"], f["complete"])
            for f in sorted(files, key=lambda f: f["path"])
        ),
    )


def attempt_row(attempt: Attempt) -> dict[str, Any]:
    """The row of an ended attempt."""
    return {
        "work_request_id": attempt.work_request_id,
        "attempt": attempt.attempt,
        "worker_name": attempt.worker_name,
        "assigned_at": attempt.assigned_at,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "outcome": attempt.outcome.value,
        "result": attempt.result.value,
        "reason": attempt.reason,
        "message": attempt.message,
    }


def attempt_from(row: Mapping[Any, Any]) -> Attempt:
    """An ended attempt from its row."""
    return Attempt(
        work_request_id=row["work_request_id"],
        attempt=row["attempt"],
        worker_name=row["worker_name"],
        assigned_at=row["assigned_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        outcome=State(row["outcome"]),
        result=Result(row["result"]),
        reason=row["reason"],
        message=row["message"],
    )


def tenant_row(tenant: Tenant) -> dict[str, Any]:
    """The row of a tenant."""
    return {
        "name": tenant.name,
        "weight": tenant.weight,
        "max_running": tenant.max_running,
        "max_pending": tenant.max_pending,
    }


def tenant_from(row: Mapping[Any, Any]) -> Tenant:
    """The tenant of a row."""
    return Tenant(row["name"], row["weight"], row["max_running"], row["max_pending"])
