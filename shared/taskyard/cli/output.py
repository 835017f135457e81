"""Printing results for people, or as JSON for scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from taskyard.v1 import work_requests_pb2


def state_name(
    work_request: work_requests_pb2.WorkRequest | work_requests_pb2.PipelineNode,
) -> str:
    """`completed (success)`, `running`, ..."""
    state = work_requests_pb2.WorkRequestState.Name(work_request.state)
    text = state.removeprefix("WORK_REQUEST_STATE_").lower()
    if work_request.result:
        result = work_requests_pb2.WorkRequestResult.Name(work_request.result)
        text += f" ({result.removeprefix('WORK_REQUEST_RESULT_').lower()})"
    return text


TimeField = Literal["created_at", "started_at", "completed_at"]


def _moment(work_request: work_requests_pb2.WorkRequest, field: TimeField) -> datetime | None:
    if not work_request.HasField(field):
        return None
    stamp: Timestamp = getattr(work_request, field)
    return stamp.ToDatetime(UTC)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{rest:02d}s"


def describe(work_request: work_requests_pb2.WorkRequest) -> str:
    """A few lines describing a work request."""
    created, started = _moment(work_request, "created_at"), _moment(work_request, "started_at")
    completed = _moment(work_request, "completed_at")
    by = f" by {work_request.owner}" if work_request.owner else ""
    lines = [
        f"id:        {work_request.id}",
        f"task:      {work_request.task_name} {work_request.task_data_json}",
        f"state:     {state_name(work_request)}",
        f"priority:  {work_request.priority}",
        f"attempt:   {work_request.attempt} "
        f"(at most {work_request.max_attempts} if workers are lost)",
        f"submitted: {_when(created)} UTC{by}",
    ]
    if started is not None:
        lines.append(f"started:   {_when(started)} UTC, after {_took(created, started)} waiting")
    if completed is not None:
        ran = f", ran {_took(started, completed)}" if started is not None else ""
        lines.append(f"ended:     {_when(completed)} UTC{ran}")
    if work_request.worker_name:
        lines.append(f"worker:    {work_request.worker_name}")
    if work_request.output_json:
        lines.append(f"output:    {work_request.output_json}")
    if work_request.HasField("error"):
        error = work_request.error
        lines.append(f"error:     {error.reason}: {error.message}")
    if work_request.details_json:
        lines.append(f"details:   {work_request.details_json}")
    return "\n".join(lines)


def one_line(work_request: work_requests_pb2.WorkRequest, now: datetime | None = None) -> str:
    """One line per work request, for listings: when submitted, how long it
    waited or has been waiting, how long it ran or has been running."""
    created, started = _moment(work_request, "created_at"), _moment(work_request, "started_at")
    completed = _moment(work_request, "completed_at")
    now = now or datetime.now(UTC)
    waited = _took(created, started or (now if completed is None else completed))
    ran = _took(started, completed or now) if started is not None else "-"
    return (
        f"{work_request.id}  {_when(created)}  {work_request.task_name:<12} "
        f"{state_name(work_request):<20} waited={waited:<7} ran={ran:<7} "
        f"attempt={work_request.attempt} {work_request.worker_name}"
    ).rstrip()
