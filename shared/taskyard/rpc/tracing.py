"""RPC spans for Taskyard servers and channels (opentelemetry-instrumentation-grpc).

The interceptors follow the RPC semantic conventions and carry the W3C trace
context in call metadata. They are installed only when traces are exported:
even doing nothing, they wrap every call and stream message.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor

from taskyard.telemetry import tracing_enabled


def server_interceptors() -> list[Any]:
    """The interceptor that opens a server span per RPC, if traces are exported."""
    return [aio_server_interceptor()] if tracing_enabled() else []  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """The interceptors that open client spans and send the trace context, if exported."""
    return list(aio_client_interceptors()) if tracing_enabled() else []  # type: ignore[no-untyped-call]
