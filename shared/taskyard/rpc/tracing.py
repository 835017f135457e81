"""RPC spans for Taskyard servers and channels.

Server spans come from our own interceptor (`server_spans`), client spans
from opentelemetry-instrumentation-grpc. Both follow the RPC semantic
conventions and carry the trace context in call metadata. They are installed
only when traces are exported: even doing nothing, they wrap every call and
stream message.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from taskyard.rpc.server_spans import ServerSpans
from taskyard.span_recorder import RecordingTracerProvider
from taskyard.telemetry import tracing_enabled

SCOPE = "taskyard.rpc"


def server_interceptors() -> list[Any]:
    """The interceptor that opens a server span per RPC, if traces are exported."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, RecordingTracerProvider):  # what `configure` installs to export
        return [ServerSpans(provider.recorder(SCOPE))]
    return []


def client_interceptors() -> list[Any]:
    """The interceptors that open client spans and send the trace context, if exported."""
    return list(aio_client_interceptors()) if tracing_enabled() else []  # type: ignore[no-untyped-call]
