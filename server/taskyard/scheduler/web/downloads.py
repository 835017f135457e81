"""What the status page streams besides pages: a task's live log (the same
stream as `taskyard logs --follow`), artifact files, and `/metrics`."""

from __future__ import annotations

import codecs
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from taskyard import limits, logframes
from taskyard.errors import TaskyardError, invalid
from taskyard.scheduler.domain import FINAL_STATES, Lease
from taskyard.scheduler.service.scheduler import Scheduler
from taskyard.scheduler.web import access
from taskyard.scheduler.web.views import checked

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _number(name: str, text: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or len(text) > 18:
        raise invalid(name, "must be a whole number")
    return int(text)


def log_stream(scheduler: Scheduler) -> Handler:
    """A request's log as server-sent events: an `attempt` event, then its
    `chunk`s, each with `ATTEMPT:OFFSET` to resume from as its id (which the
    browser sends back when it reconnects). Without `?attempt=`, the stream
    follows the request: when a lost attempt is followed by another, its
    log comes next. `end` once the request can write no more."""

    async def stream(request: web.Request) -> web.StreamResponse:
        work_request_id = checked("id", request.match_info["id"], limits.MAX_ID)
        viewer = access.caller_of(request)
        current = await scheduler.work_requests.get(viewer, work_request_id)
        fixed = _number("attempt", request.query.get("attempt", ""))
        if fixed > current.attempt:
            raise invalid("attempt", f"{work_request_id} has had {current.attempt}")
        attempt, offset = _resume_from(request, fixed or current.attempt)
        async with sse_response(request) as events:
            while True:
                await events.send(str(attempt), event="attempt")
                if not await _send_log(scheduler, events, Lease(work_request_id, attempt), offset):
                    break
                current = await scheduler.work_requests.get(viewer, work_request_id)
                if fixed or current.state in FINAL_STATES or current.attempt == attempt:
                    break
                attempt, offset = current.attempt, 0
            await events.send("", event="end")
        return events

    return stream


def _resume_from(request: web.Request, attempt: int) -> tuple[int, int]:
    """The attempt and offset a reconnecting browser had reached, if it says."""
    seen = request.headers.get("Last-Event-ID", "")
    if not seen:
        return attempt, 0
    number, _, offset = seen.partition(":")
    return _number("Last-Event-ID", number) or attempt, _number("Last-Event-ID", offset)


async def _send_log(
    scheduler: Scheduler, events: EventSourceResponse, lease: Lease, offset: int
) -> bool:
    """Send one attempt's log from `offset` as it grows; False if it cannot
    be read (said in a `failed` event)."""
    decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                for name in logframes.NAMES.values()}  # fmt: skip
    try:
        async for _, next_offset, kind, data in scheduler.logs.read(lease, offset, follow=True):
            name = logframes.NAMES[kind]
            chunk = json.dumps({"stream": name, "text": decoders[name].decode(data)})
            await events.send(chunk, id=f"{lease.attempt}:{next_offset}", event="chunk")
    except TaskyardError as error:
        await events.send(error.message, event="failed")
        return False
    return True


def artifact_file(scheduler: Scheduler) -> Handler:
    """One file of an artifact, as a download."""

    async def download(request: web.Request) -> web.StreamResponse:
        artifact_id = checked("id", request.match_info["id"], limits.MAX_ID)
        path = checked("path", request.match_info["path"], 4096)
        chunks = scheduler.artifacts.download(access.caller_of(request), artifact_id, [path])
        response = web.StreamResponse()
        async for file, _, data in chunks:
            if file is not None:
                response.content_type = file.content_type or "application/octet-stream"
                response.content_length = file.size
                filename = quote(path.rsplit("/", 1)[-1])
                response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{filename}"
                await response.prepare(request)
            elif data:
                await response.write(data)
        await response.write_eof()
        return response

    return download


async def metrics(_request: web.Request) -> web.StreamResponse:
    """The scheduler's metrics in Prometheus' text format."""
    body = generate_latest(REGISTRY)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
