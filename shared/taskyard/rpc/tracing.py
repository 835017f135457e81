"""RPC spans for Taskyard servers and channels.

Server spans come from our own interceptor (`server_spans`), client spans
from opentelemetry-instrumentation-grpc. Both follow the RPC semantic
conventions and carry the trace context in call metadata. They are installed
only when traces are recorded: even doing nothing, they wrap every call and
stream message.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from taskyard.rpc.server_spans import ServerSpans
from taskyard.telemetry import traces_recorded, tracing_enabled

SCOPE = "taskyard.rpc"


def server_interceptors() -> list[Any]:
    """The interceptor that opens a server span per RPC, if traces are recorded."""
    return [ServerSpans(trace.get_tracer(SCOPE))] if traces_recorded() else []


def client_interceptors() -> list[Any]:
    """The interceptors that open client spans and send the trace context, if
    exported (the instrumentation is loaded only then: it is a third of a
    CLI command's start-up)."""
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors  # noqa: PLC0415

    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]
