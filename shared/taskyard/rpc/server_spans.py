"""A SERVER span around every call a Taskyard server handles.

The spans follow the RPC semantic conventions for gRPC: named
`{service}/{method}`, with `rpc.system`, `rpc.service`, `rpc.method`,
`rpc.grpc.status_code` and the peer's `network.peer.address` and
`network.peer.port`; the status is ERROR only for the codes that mean the
server failed. The caller's context (its `traceparent`, through the
configured propagators) is the parent, and the span is current while the
method runs, so the application's spans and log lines nest under it.

opentelemetry-instrumentation-grpc's server interceptor wraps the servicer
context of every call as well; this one only opens the span, through the
public tracer API. The client side uses that instrumentation.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextvars import Token
from typing import Any, TypeAlias
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from taskyard.rpc.handlers import Continuation, Handler, rewrapped

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Attributes: TypeAlias = dict[str, AttributeValue]
_Open: TypeAlias = tuple[trace.Span, Token[otel_context.Context]]
Opener: TypeAlias = Callable[[Context], _Open]
_NEW_TRACE = otel_context.Context()
# The RPC and network semantic conventions' attribute names (the rpc ones are
# still "incubating" in opentelemetry-semantic-conventions, a private module).
RPC_SYSTEM, RPC_SERVICE, RPC_METHOD = "rpc.system", "rpc.service", "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT = "network.peer.address", "network.peer.port"

# The codes for which a server span's status is ERROR (the others are the
# caller's doing: its status stays unset).
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class ServerSpans(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Opens a SERVER span for each call, made current while it runs."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        # The metadata keys the configured propagators read: a call that has
        # none of them (most have none) starts a trace without asking them.
        self._fields = frozenset(propagate.get_global_textmap().fields)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        name, attributes = _method(handler_call_details.method)

        def open_span(context: Context) -> _Open:
            return self._open(name, attributes, context)

        return rewrapped(
            handler,
            lambda behaviour: _unary(behaviour, open_span),
            lambda behaviour: _streaming(behaviour, open_span),
        )

    def _open(self, name: str, method: Attributes, context: Context) -> _Open:
        """The call's span, started in the caller's context and made current;
        and the token that makes it current."""
        fields = self._fields
        carrier = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if key in fields and isinstance(value, str)
        }
        parent = propagate.extract(carrier) if carrier else _NEW_TRACE
        attributes = {**method, **_peer(context.peer())}
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return span, otel_context.attach(trace.set_span_in_context(span, parent))


def _unary(behaviour: Any, open_span: Opener) -> Any:
    async def call(request: Any, context: Context) -> Any:
        with _CallSpan(open_span, context):
            return await behaviour(request, context)

    return call


def _streaming(behaviour: Any, open_span: Opener) -> Any:
    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        with _CallSpan(open_span, context):
            async for response in behaviour(request, context):
                yield response

    return call


class _CallSpan:
    """The call's span, current from the start of the call to its end."""

    def __init__(self, open_span: Opener, context: Context) -> None:
        self._open = open_span
        self._context = context

    def __enter__(self) -> None:
        self._span, self._token = self._open(self._context)

    def __exit__(self, kind: object, error: BaseException | None, trace_back: object) -> None:
        _close(self._span, self._token, self._context, error)


def _close(
    span: trace.Span,
    token: Token[otel_context.Context],
    context: Context,
    error: BaseException | None,
) -> None:
    """End the call's span with the status the call ended with."""
    otel_context.detach(token)
    code = _status_code(context, error)
    span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
    if error is not None and code is grpc.StatusCode.UNKNOWN:
        span.record_exception(error, escaped=True)  # escaped the servicer
    if code in SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, context.details() or code.name))
    span.end()


def _status_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    """The code the call ends with: the one the servicer set or aborted with;
    else OK, CANCELLED for a cancelled call, UNKNOWN for an escaped error."""
    code: grpc.StatusCode | None = context.code()
    if code is not None:
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):  # the caller went away
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


@functools.lru_cache(maxsize=256)
def _method(full_name: str) -> tuple[str, Attributes]:
    """A method's span name and attributes, from `/package.Service/Method`."""
    service, _, method = full_name.lstrip("/").rpartition("/")
    return f"{service}/{method}", {RPC_SYSTEM: "grpc", RPC_SERVICE: service, RPC_METHOD: method}


@functools.lru_cache(maxsize=1024)
def _peer(peer: str) -> Attributes:
    """The peer's address and port, from gRPC's `ipv4:127.0.0.1:5000` or
    `ipv6:[::1]:5000`, perhaps percent-encoded (nothing for a Unix socket
    or a form not known)."""
    family, _, where = peer.partition(":")
    address, _, port = where.rpartition(":")
    if family not in ("ipv4", "ipv6") or not port.isdigit():
        return {}
    return {NETWORK_PEER_ADDRESS: unquote(address).strip("[]"), NETWORK_PEER_PORT: int(port)}
