"""Conversion between taskyard.v1 messages and scheduler domain objects."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar, cast

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from taskyard import limits
from taskyard.errors import TaskyardError
from taskyard.rpc import status as rpc_status
from taskyard.rpc.batching import batches
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import (
    Artifact,
    ArtifactFile,
    Dependency,
    Lease,
    Needs,
    Result,
    Role,
    State,
    Tenant,
    Token,
    Worker,
    WorkError,
    WorkRequest,
)
from taskyard.scheduler.explain import Eligibility, Explanation
from taskyard.scheduler.service import messages
from taskyard.scheduler.service.auth import Principal, owner_of, submitting_tenant
from taskyard.scheduler.service.pipelines import Pipeline
from taskyard.scheduler.service.submission import SubmitSpec
from taskyard.v1 import artifacts_pb2, common_pb2, operator_pb2, work_requests_pb2, workers_pb2

T = TypeVar("T")
M = TypeVar("M", bound=Message)

STATES = {
    State.PENDING: work_requests_pb2.WORK_REQUEST_STATE_PENDING,
    State.ASSIGNED: work_requests_pb2.WORK_REQUEST_STATE_ASSIGNED,
    State.RUNNING: work_requests_pb2.WORK_REQUEST_STATE_RUNNING,
    State.COMPLETED: work_requests_pb2.WORK_REQUEST_STATE_COMPLETED,
    State.ABORTED: work_requests_pb2.WORK_REQUEST_STATE_ABORTED,
    State.BLOCKED: work_requests_pb2.WORK_REQUEST_STATE_BLOCKED,
}
STATES_FROM_PROTO = {value: key for key, value in STATES.items()}
RESULTS = {
    Result.NONE: work_requests_pb2.WORK_REQUEST_RESULT_UNSPECIFIED,
    Result.SUCCESS: work_requests_pb2.WORK_REQUEST_RESULT_SUCCESS,
    Result.FAILURE: work_requests_pb2.WORK_REQUEST_RESULT_FAILURE,
    Result.ERROR: work_requests_pb2.WORK_REQUEST_RESULT_ERROR,
}
RESULTS_FROM_PROTO = {value: key for key, value in RESULTS.items()}
OUTCOMES = {
    workers_pb2.WORK_OUTCOME_SUCCESS: lifecycle.Outcome.SUCCESS,
    workers_pb2.WORK_OUTCOME_FAILURE: lifecycle.Outcome.FAILURE,
    workers_pb2.WORK_OUTCOME_ERROR: lifecycle.Outcome.ERROR,
    workers_pb2.WORK_OUTCOME_ABORTED: lifecycle.Outcome.ABORTED,
}
ROLES = {
    Role.SUBMIT: operator_pb2.TOKEN_ROLE_SUBMIT,
    Role.ADMIN: operator_pb2.TOKEN_ROLE_ADMIN,
    Role.WORKER_ACTIVATION: operator_pb2.TOKEN_ROLE_WORKER_ACTIVATION,
}
ROLES_FROM_PROTO = {value: key for key, value in ROLES.items()}
ELIGIBILITIES = {
    Eligibility.ELIGIBLE: work_requests_pb2.ELIGIBILITY_ELIGIBLE,
    Eligibility.NOT_CONNECTED: work_requests_pb2.ELIGIBILITY_NOT_CONNECTED,
    Eligibility.DISABLED: work_requests_pb2.ELIGIBILITY_DISABLED,
    Eligibility.DENY_LISTED: work_requests_pb2.ELIGIBILITY_DENY_LISTED,
    Eligibility.NOT_ALLOW_LISTED: work_requests_pb2.ELIGIBILITY_NOT_ALLOW_LISTED,
    Eligibility.BUSY: work_requests_pb2.ELIGIBILITY_BUSY,
    Eligibility.VERSION_MISMATCH: work_requests_pb2.ELIGIBILITY_VERSION_MISMATCH,
    Eligibility.CANNOT_RUN: work_requests_pb2.ELIGIBILITY_CANNOT_RUN,
    Eligibility.RESERVED: work_requests_pb2.ELIGIBILITY_RESERVED,
}
ABORT_REASONS = {
    messages.AbortReason.USER: workers_pb2.ABORT_REASON_USER,
    messages.AbortReason.TIMEOUT: workers_pb2.ABORT_REASON_TIMEOUT,
    messages.AbortReason.LEASE_LOST: workers_pb2.ABORT_REASON_LEASE_LOST,
}
REPORT_KINDS = {
    messages.ReportKind.STARTED: workers_pb2.REPORT_KIND_STARTED,
    messages.ReportKind.COMPLETED: workers_pb2.REPORT_KIND_COMPLETED,
    messages.ReportKind.DECLINED: workers_pb2.REPORT_KIND_DECLINED,
    messages.ReportKind.UNKNOWN: workers_pb2.REPORT_KIND_UNSPECIFIED,
}


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None to leave the field unset."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


#: The longest Duration protobuf allows (10,000 years), in seconds.
_MAX_DURATION = 315_576_000_000


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    """A Duration, or None to leave the field unset. A value beyond
    protobuf's range (which nothing accepted today can store) is clamped to
    it, so no stored row can fail a read."""
    if seconds is None or math.isnan(seconds):
        return None
    result = duration_pb2.Duration()
    clamped = max(-_MAX_DURATION, min(_MAX_DURATION, seconds))
    result.FromNanoseconds(round(clamped * 1e9))
    return result


def fit(
    items: Sequence[T],
    to_proto: Callable[[T], M],
    key: Callable[[T], str],
    budget: int = limits.MAX_PAGE_BYTES,
) -> tuple[list[M], str]:
    """The wire forms of the first `items` that add up to at most `budget`
    bytes (at least one), and the key of the last one taken when some were
    left out, else "": a page stays under the message limit whatever its
    records hold."""
    taken: list[M] = []
    used = 0
    for index, item in enumerate(items):
        message = to_proto(item)
        used += message.ByteSize()
        if taken and used > budget:
            return taken, key(items[index - 1])
        taken.append(message)
    return taken, ""


def lease_to_proto(lease: Lease) -> common_pb2.Lease:
    return common_pb2.Lease(work_request_id=lease.work_request_id, attempt=lease.attempt)


def lease_from_proto(lease: common_pb2.Lease) -> Lease:
    return Lease(lease.work_request_id, lease.attempt)


def work_error_to_proto(error: WorkError | None) -> work_requests_pb2.WorkRequestError | None:
    if error is None:
        return None
    return work_requests_pb2.WorkRequestError(
        reason=error.reason, type=error.type, message=error.message
    )


def work_request_to_proto(work_request: WorkRequest) -> work_requests_pb2.WorkRequest:
    """The wire form of a work request."""
    return work_requests_pb2.WorkRequest(
        id=work_request.id,
        task_name=work_request.task_name,
        task_data_json=work_request.task_data_json,
        priority=work_request.priority,
        state=STATES[work_request.state],
        result=RESULTS[work_request.result],
        output_json=work_request.output_json,
        error=work_error_to_proto(work_request.error),
        attempt=work_request.attempt,
        max_attempts=work_request.max_attempts,
        worker_name=work_request.worker_name,
        timeout=duration(work_request.timeout_seconds),
        idempotency_key=work_request.idempotency_key,
        created_at=timestamp(work_request.created_at),
        assigned_at=timestamp(work_request.assigned_at),
        started_at=timestamp(work_request.started_at),
        completed_at=timestamp(work_request.completed_at),
        updated_at=timestamp(work_request.updated_at),
        owner=work_request.owner,
        details_json=work_request.details_json,
        tenant=work_request.tenant,
    )


def artifact_file_from_proto(file: artifacts_pb2.ArtifactFile) -> ArtifactFile:
    return ArtifactFile(file.path, file.size, file.sha256.lower(), file.content_type)


def artifact_file_to_proto(file: ArtifactFile) -> artifacts_pb2.ArtifactFile:
    return artifacts_pb2.ArtifactFile(
        path=file.path, size=file.size, sha256=file.sha256, content_type=file.content_type
    )


def artifact_to_proto(artifact: Artifact) -> artifacts_pb2.Artifact:
    """The wire form of an artifact."""
    return artifacts_pb2.Artifact(
        id=artifact.id,
        category=artifact.category,
        data_json=artifact.data_json,
        work_request_id=artifact.work_request_id,
        created_at=timestamp(artifact.created_at),
        expires_at=timestamp(artifact.expires_at),
        files=[artifact_file_to_proto(f) for f in artifact.files],
        complete=artifact.complete,
        tenant=artifact.tenant,
    )


def submit_spec(request: work_requests_pb2.SubmitRequest, caller: Principal) -> SubmitSpec:
    """The domain form of a submit request by `caller`."""
    return SubmitSpec(
        task_name=request.task_name,
        task_data_json=request.task_data_json,
        priority=request.priority,
        timeout_seconds=request.timeout.ToNanoseconds() / 1e9
        if request.HasField("timeout")
        else None,
        idempotency_key=request.idempotency_key,
        max_attempts=request.max_attempts,
        owner=owner_of(caller),
        tenant=submitting_tenant(caller, request.tenant),
        ref=request.ref,
        after=tuple(dependency_from_proto(d) for d in request.after),
    )


NEEDS_TO_PROTO = {
    Needs.SUCCESS: work_requests_pb2.DEPENDENCY_NEEDS_SUCCESS,
    Needs.DONE: work_requests_pb2.DEPENDENCY_NEEDS_DONE,
}


def dependency_from_proto(dependency: work_requests_pb2.Dependency) -> Dependency:
    done = dependency.needs == work_requests_pb2.DEPENDENCY_NEEDS_DONE
    return Dependency(dependency.on, Needs.DONE if done else Needs.SUCCESS)


def dependency_to_proto(dependency: Dependency) -> work_requests_pb2.Dependency:
    return work_requests_pb2.Dependency(on=dependency.on, needs=NEEDS_TO_PROTO[dependency.needs])


def pipeline_to_proto(pipeline: Pipeline) -> work_requests_pb2.GetPipelineResponse:
    return work_requests_pb2.GetPipelineResponse(
        nodes=[
            work_requests_pb2.PipelineNode(
                id=node.id,
                task_name=node.task_name,
                state=STATES[node.state],
                result=RESULTS[node.result],
                after=[dependency_to_proto(d) for d in pipeline.waits.get(node.id, [])],
                error_reason=node.error.reason if node.error else "",
            )
            for node in pipeline.nodes
        ],
        done=pipeline.done,
        failed=pipeline.failed,
        truncated=pipeline.truncated,
    )


def problem(error: TaskyardError) -> common_pb2.Problem:
    """An error carried in a response body."""
    return common_pb2.Problem(
        code=rpc_status.code_of(error).value[0],
        reason=error.reason,
        message=error.message,
        field_violations=[
            common_pb2.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ],
    )


def explanation_to_proto(
    work_request: WorkRequest, explanation: Explanation
) -> work_requests_pb2.ExplainResponse:
    return work_requests_pb2.ExplainResponse(
        work_request=work_request_to_proto(work_request),
        workers=[
            work_requests_pb2.WorkerVerdict(
                worker_name=v.worker_name,
                eligibility=ELIGIBILITIES[v.eligibility],
                detail=v.detail,
            )
            for v in explanation.verdicts
        ],
        runnable=explanation.runnable,
        summary=explanation.summary,
        waiting_for=[dependency_to_proto(d) for d in explanation.waiting_for],
    )


def worker_to_proto(
    worker: Worker, connected: bool, running: Iterable[Lease]
) -> operator_pb2.Worker:
    """The operator's view of a worker."""
    return operator_pb2.Worker(
        name=worker.name,
        enabled=worker.enabled,
        connected=connected,
        slots=worker.slots,
        running=[lease_to_proto(lease) for lease in running],
        dynamic_metadata_json=json.dumps(worker.dynamic_metadata, sort_keys=True),
        static_metadata_json=json.dumps(worker.static_metadata, sort_keys=True),
        allowed_tasks=worker.allowed_tasks,
        denied_tasks=worker.denied_tasks,
        registered_at=timestamp(worker.registered_at),
        last_seen_at=timestamp(worker.last_seen_at),
        scheduler=worker.scheduler,
        tenants=worker.tenants,
    )


def token_to_proto(token: Token) -> operator_pb2.Token:
    return operator_pb2.Token(
        id=token.id,
        role=ROLES[token.role],
        description=token.description,
        created_at=timestamp(token.created_at),
        expires_at=timestamp(token.expires_at),
        used=token.used_at is not None,
        revoked_at=timestamp(token.revoked_at),
        tenant=token.tenant,
    )


def tenant_to_proto(tenant: Tenant, running: int, pending: int) -> operator_pb2.Tenant:
    """A tenant as an operator sees it, with what it holds now."""
    return operator_pb2.Tenant(
        name=tenant.name,
        weight=tenant.weight,
        max_running=tenant.max_running or 0,
        max_pending=tenant.max_pending or 0,
        running=running,
        pending=pending,
    )


def session_responses(
    ready: Iterable[messages.SessionMessage],
) -> Iterator[workers_pb2.SessionResponse]:
    """The wire form of messages ready for a worker, in order: each run of
    assignments, and of acknowledgements, goes in as few messages as fit."""
    for kind, run in itertools.groupby(ready, type):
        if kind is messages.Assign:
            assigns = cast(Iterator[messages.Assign], run)
            for assignments in batches(map(assignment_to_proto, assigns)):
                yield workers_pb2.SessionResponse(
                    assignments=workers_pb2.Assignments(assignments=assignments)
                )
        elif kind is messages.Ack:
            for acks in batches(map(ack_to_proto, cast(Iterator[messages.Ack], run))):
                yield workers_pb2.SessionResponse(acks=workers_pb2.ReportAcks(acks=acks))
        elif kind is messages.OutputAck:
            outputs = map(output_ack_to_proto, cast(Iterator[messages.OutputAck], run))
            for output_acks in batches(outputs):
                yield workers_pb2.SessionResponse(
                    output_acks=workers_pb2.OutputAcks(acks=output_acks)
                )
        else:
            yield from map(_solo_to_proto, run)


def assignment_to_proto(message: messages.Assign) -> workers_pb2.Assignment:
    work_request = message.work_request
    trace = work_request.trace_context
    return workers_pb2.Assignment(
        lease=lease_to_proto(work_request.lease),
        task_name=work_request.task_name,
        task_data_json=work_request.task_data_json,
        task_version=message.task_version,
        timeout=duration(message.timeout_seconds),
        trace_context=common_pb2.TraceContext(
            traceparent=trace.get("traceparent", ""),
            tracestate=trace.get("tracestate", ""),
        ),
    )


def ack_to_proto(message: messages.Ack) -> workers_pb2.ReportAck:
    return workers_pb2.ReportAck(
        lease=lease_to_proto(message.lease),
        kind=REPORT_KINDS[message.kind],
        problem=problem(message.problem) if message.problem else None,
    )


def output_ack_to_proto(message: messages.OutputAck) -> workers_pb2.OutputAck:
    return workers_pb2.OutputAck(
        lease=lease_to_proto(message.lease), committed=message.committed, closed=message.closed
    )


def _solo_to_proto(message: messages.SessionMessage) -> workers_pb2.SessionResponse:
    """The wire form of one message that travels alone."""
    match message:
        case messages.Welcome():
            return workers_pb2.SessionResponse(
                welcome=workers_pb2.SessionWelcome(
                    worker_name=message.worker_name,
                    heartbeat_interval=duration(message.heartbeat_interval),
                    lease_grace=duration(message.lease_grace),
                )
            )
        case messages.AbortWork():
            return workers_pb2.SessionResponse(
                abort=workers_pb2.AbortWork(
                    lease=lease_to_proto(message.lease),
                    reason=ABORT_REASONS[message.reason],
                    message=message.message,
                )
            )
        case messages.RefreshMetadata():
            return workers_pb2.SessionResponse(metadata_refresh=workers_pb2.MetadataRefresh())
        case messages.Closing():
            return workers_pb2.SessionResponse(
                closing=workers_pb2.SessionClosing(
                    reason=message.reason, reconnect_after=duration(message.reconnect_after)
                )
            )
        case messages.Assign() | messages.Ack() | messages.OutputAck():
            return next(session_responses([message]))
