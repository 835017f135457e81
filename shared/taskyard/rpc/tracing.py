"""RPC spans for every Taskyard server and channel (opentelemetry-instrumentation-grpc).

The interceptors follow the RPC semantic conventions and carry the W3C trace
context in call metadata. They do nothing unless telemetry is configured.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor


def server_interceptor() -> Any:
    """The interceptor that opens a server span per RPC (the library is untyped)."""
    return aio_server_interceptor()  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """The interceptors that open a client span per RPC and send the trace context."""
    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]
