"""What the status page streams besides pages: a task's live log (the same
stream as `taskyard logs --follow`), artifact files, and `/metrics`."""

from __future__ import annotations

import codecs
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp_sse import sse_response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from taskyard import limits, logframes
from taskyard.errors import TaskyardError, invalid
from taskyard.scheduler.domain import Lease
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
    """A request's log as server-sent events: `chunk` events (each with the
    offset to resume from as its id, which the browser sends back when it
    reconnects), then `end` once the attempt can write no more."""

    async def stream(request: web.Request) -> web.StreamResponse:
        work_request_id = checked("id", request.match_info["id"], limits.MAX_ID)
        work_request = await scheduler.work_requests.get(work_request_id)
        attempt = _number("attempt", request.query.get("attempt", "")) or work_request.attempt
        if attempt > work_request.attempt:
            raise invalid("attempt", f"{work_request_id} has had {work_request.attempt}")
        offset = _number("Last-Event-ID", request.headers.get("Last-Event-ID", ""))
        reading = scheduler.logs.read(Lease(work_request_id, attempt), offset, follow=True)
        decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                    for name in logframes.NAMES.values()}  # fmt: skip
        async with sse_response(request) as events:
            try:
                async for _, next_offset, kind, data in reading:
                    name = logframes.NAMES[kind]
                    text = decoders[name].decode(data)
                    chunk = json.dumps({"stream": name, "text": text})
                    await events.send(chunk, id=str(next_offset), event="chunk")
            except TaskyardError as error:
                await events.send(error.message, event="failed")
            await events.send("", event="end")
        return events

    return stream


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
