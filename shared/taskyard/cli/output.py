"""Printing results for people, or as JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf import json_format
from google.protobuf.message import Message

from taskyard.v1 import work_requests_pb2


def as_json(message: Message | Sequence[Message]) -> str:
    """JSON of one message or a list of them (field names as in the .proto)."""
    if isinstance(message, Message):
        return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)
    items = [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in message]
    return json.dumps(items, indent=2)


def state_name(work_request: work_requests_pb2.WorkRequest) -> str:
    """`completed (success)`, `running`, ..."""
    state = work_requests_pb2.WorkRequestState.Name(work_request.state)
    text = state.removeprefix("WORK_REQUEST_STATE_").lower()
    if work_request.result:
        result = work_requests_pb2.WorkRequestResult.Name(work_request.result)
        text += f" ({result.removeprefix('WORK_REQUEST_RESULT_').lower()})"
    return text


def describe(work_request: work_requests_pb2.WorkRequest) -> str:
    """A few lines describing a work request."""
    lines = [
        f"id:        {work_request.id}",
        f"task:      {work_request.task_name} {work_request.task_data_json}",
        f"state:     {state_name(work_request)}",
        f"priority:  {work_request.priority}",
        f"attempt:   {work_request.attempt} of {work_request.max_attempts}",
    ]
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


def one_line(work_request: work_requests_pb2.WorkRequest) -> str:
    """One line per work request, for listings."""
    return (
        f"{work_request.id}  {work_request.task_name:<12} {state_name(work_request):<22} "
        f"prio={work_request.priority} attempt={work_request.attempt} "
        f"{work_request.worker_name}"
    ).rstrip()
