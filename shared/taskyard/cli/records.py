"""What `--json` prints: the CLI's stable schema (docs/cli.md).

Plain JSON for scripts: objects rather than JSON inside strings, numbers as
numbers, every field present (null when unset), states and results spelled
as the human output spells them, times in RFC 3339 (UTC).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskyard.v1 import artifacts_pb2, operator_pb2, work_requests_pb2

Record = dict[str, Any]


def _enum(name: str, prefix: str) -> str | None:
    word = name.removeprefix(prefix).lower().replace("_", "-")
    return None if word == "unspecified" else word


def _time(message: Message, field: str) -> str | None:
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(message: Message, start: str, end: str) -> float | None:
    if not (message.HasField(start) and message.HasField(end)):
        return None
    span = getattr(message, end).ToDatetime() - getattr(message, start).ToDatetime()
    return round(float(span.total_seconds()), 6)


def _json(text: str, default: Any = None) -> Any:
    return json.loads(text) if text else default


#: A request, or a pipeline's node: each has a state and a result.
Stated = work_requests_pb2.WorkRequest | work_requests_pb2.PipelineNode


def state(work_request: Stated) -> str:
    """`pending`, `running`, `completed`..."""
    name = work_requests_pb2.WorkRequestState.Name(work_request.state)
    return _enum(name, "WORK_REQUEST_STATE_") or "unknown"


def result(work_request: Stated) -> str | None:
    """`success`, `failure`, `error`, or None before the end."""
    name = work_requests_pb2.WorkRequestResult.Name(work_request.result)
    return _enum(name, "WORK_REQUEST_RESULT_")


def needs(dependency: work_requests_pb2.Dependency) -> str:
    """`success` or `done`: what is awaited of the request."""
    return "done" if dependency.needs == work_requests_pb2.DEPENDENCY_NEEDS_DONE else "success"


def dependency(item: work_requests_pb2.Dependency) -> Record:
    return {"on": item.on, "needs": needs(item)}


def pipeline(response: work_requests_pb2.GetPipelineResponse) -> Record:
    """A pipeline: its nodes, whether it is done, how many failed."""
    return {
        "done": response.done,
        "failed": response.failed,
        "truncated": response.truncated,
        "nodes": [
            {
                "id": node.id,
                "task": node.task_name,
                "state": state(node),
                "result": result(node),
                "after": [dependency(d) for d in node.after],
                "error_reason": node.error_reason or None,
            }
            for node in response.nodes
        ],
    }


def pipeline_summary(response: work_requests_pb2.GetPipelineResponse) -> str:
    """`pipeline of 4 requests: done, 1 failed`."""
    count = f"{len(response.nodes):,}{'+' if response.truncated else ''}"
    state = "done" if response.done else "running"
    failed = f", {response.failed} failed" if response.failed else ", none failed"
    return f"pipeline of {count} requests: {state}{failed}"


def work_request(request: work_requests_pb2.WorkRequest) -> Record:
    error = request.error if request.HasField("error") else None
    return {
        "id": request.id,
        "task": request.task_name,
        "data": _json(request.task_data_json, {}),
        "priority": request.priority,
        "state": state(request),
        "result": result(request),
        "error": None
        if error is None
        else {"reason": error.reason, "type": error.type or None, "message": error.message},
        "details": _json(request.details_json, {}),
        "output": _json(request.output_json),
        "attempt": request.attempt,
        "max_attempts": request.max_attempts,
        "worker": request.worker_name or None,
        "owner": request.owner or None,
        "tenant": request.tenant or None,
        "idempotency_key": request.idempotency_key or None,
        "timeout_seconds": request.timeout.ToNanoseconds() / 1e9
        if request.HasField("timeout")
        else None,
        "created_at": _time(request, "created_at"),
        "assigned_at": _time(request, "assigned_at"),
        "started_at": _time(request, "started_at"),
        "completed_at": _time(request, "completed_at"),
        "updated_at": _time(request, "updated_at"),
        "waited_seconds": _seconds(request, "created_at", "started_at"),
        "ran_seconds": _seconds(request, "started_at", "completed_at"),
    }


def artifact(item: artifacts_pb2.Artifact) -> Record:
    return {
        "id": item.id,
        "category": item.category,
        "data": _json(item.data_json, {}),
        "work_request": item.work_request_id or None,
        "tenant": item.tenant or None,
        "complete": item.complete,
        "created_at": _time(item, "created_at"),
        "expires_at": _time(item, "expires_at"),
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "content_type": f.content_type or None,
            }
            for f in item.files
        ],
    }


def worker(item: operator_pb2.Worker) -> Record:
    return {
        "name": item.name,
        "enabled": item.enabled,
        "connected": item.connected,
        "slots": item.slots,
        "running": [
            {"work_request": lease.work_request_id, "attempt": lease.attempt}
            for lease in item.running
        ],
        "dynamic_metadata": _json(item.dynamic_metadata_json, {}),
        "static_metadata": _json(item.static_metadata_json, {}),
        "allowed_tasks": list(item.allowed_tasks),
        "denied_tasks": list(item.denied_tasks),
        "registered_at": _time(item, "registered_at"),
        "last_seen_at": _time(item, "last_seen_at"),
        "scheduler": item.scheduler or None,
        "tenants": list(item.tenants),
    }


def token(item: operator_pb2.Token) -> Record:
    return {
        "id": item.id,
        "role": role(item.role),
        "state": token_state(item),
        "description": item.description,
        "created_at": _time(item, "created_at"),
        "expires_at": _time(item, "expires_at"),
        "revoked_at": _time(item, "revoked_at"),
        "used": item.used,
        "tenant": item.tenant or None,
    }


def tenant(item: operator_pb2.Tenant) -> Record:
    return {
        "name": item.name,
        "weight": item.weight,
        "max_running": item.max_running or None,
        "max_pending": item.max_pending or None,
        "running": item.running,
        "pending": item.pending,
    }


def role(value: int) -> str:
    return _enum(operator_pb2.TokenRole.Name(value), "TOKEN_ROLE_") or "unknown"  # type: ignore[arg-type]


def token_state(item: operator_pb2.Token) -> str:
    """`active`, `revoked`, `expired` or `used` (an activation token)."""
    if item.HasField("revoked_at"):
        return "revoked"
    if item.used:
        return "used"
    if item.HasField("expires_at") and item.expires_at.ToDatetime(UTC) <= datetime.now(UTC):
        return "expired"
    return "active"


def task(item: operator_pb2.TaskInfo) -> Record:
    return {
        "name": item.name,
        "version": item.version,
        "package": item.package,
        "description": item.description,
        "data_schema": _json(item.data_schema_json, {}),
    }


def explanation(response: work_requests_pb2.ExplainResponse) -> Record:
    return {
        "work_request": work_request(response.work_request),
        "runnable": response.runnable,
        "summary": response.summary,
        "workers": [
            {
                "worker": verdict.worker_name,
                "eligibility": _enum(
                    work_requests_pb2.Eligibility.Name(verdict.eligibility), "ELIGIBILITY_"
                ),
                "detail": verdict.detail,
            }
            for verdict in response.workers
        ],
        "waiting_for": [dependency(d) for d in response.waiting_for],
    }


def dumps(value: Any) -> str:
    """The JSON text printed."""
    return json.dumps(value, indent=2, sort_keys=False)
