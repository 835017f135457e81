"""Server spans of a real grpc.aio server: one per call, following the RPC
semantic conventions, in the caller's trace, current while the method runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskyard.rpc.server_spans import ServerSpans

SERVICE = "test.v1.Probe"
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_ID = 0xB7AD6B7169203331
TRACEPARENT = ("traceparent", f"00-{TRACE_ID:032x}-{CALLER_ID:016x}-01")


class Probe:
    """Methods that end each way a call can end; `inner` is what was current."""

    def __init__(self) -> None:
        self.inner: list[trace.SpanContext] = []

    async def ok(self, request: bytes, context: Any) -> bytes:
        self.inner.append(trace.get_current_span().get_span_context())
        return request

    async def not_found(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b""  # not reached: abort raises

    async def internal(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.INTERNAL, "it broke")
        return b""

    async def crash(self, request: bytes, context: Any) -> bytes:
        raise ValueError("unexpected")

    async def stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(2):
            self.inner.append(trace.get_current_span().get_span_context())
            yield request

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Ok": unary(self.ok),
                "NotFound": unary(self.not_found),
                "Internal": unary(self.internal),
                "Crash": unary(self.crash),
                "Stream": grpc.unary_stream_rpc_method_handler(self.stream),
            },
        )


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.tracer = provider.get_tracer("taskyard.rpc")  # type: ignore[attr-defined]
    yield exporter
    provider.shutdown()


@pytest.fixture
async def served(exported: InMemorySpanExporter) -> AsyncIterator[tuple[grpc.aio.Channel, Probe]]:
    probe = Probe()
    server = grpc.aio.server(interceptors=[ServerSpans(exported.tracer)])  # type: ignore[attr-defined]
    server.add_generic_rpc_handlers((probe.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, probe
    finally:
        await server.stop(None)


async def call(channel: grpc.aio.Channel, method: str, **kwargs: Any) -> grpc.StatusCode:
    try:
        await channel.unary_unary(f"/{SERVICE}/{method}", None, None)(b"x", **kwargs)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def only(exported: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exported.get_finished_spans()
    return span


async def test_a_call_is_a_server_span_named_and_described_by_the_conventions(
    served: tuple[grpc.aio.Channel, Probe], exported: InMemorySpanExporter
) -> None:
    channel, probe = served
    assert await call(channel, "Ok") == grpc.StatusCode.OK
    span = only(exported)
    assert span.name == f"{SERVICE}/Ok"
    assert span.kind is SpanKind.SERVER
    attributes = dict(span.attributes or {})
    port = attributes.pop("network.peer.port")
    assert isinstance(port, int)
    assert port > 0
    assert attributes == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Ok",
        "rpc.grpc.status_code": 0,
        "network.peer.address": "127.0.0.1",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None  # the caller sent no trace context: a new trace
    assert probe.inner == [span.context]  # current while the method ran


async def test_a_caller_that_sends_a_traceparent_has_its_trace_continued(
    served: tuple[grpc.aio.Channel, Probe], exported: InMemorySpanExporter
) -> None:
    channel, _ = served
    await call(channel, "Ok", metadata=(TRACEPARENT,))
    span = only(exported)
    assert span.context is not None
    assert span.context.trace_id == TRACE_ID
    assert span.parent is not None
    assert (span.parent.span_id, span.parent.is_remote) == (CALLER_ID, True)


@pytest.mark.parametrize(
    ("method", "code", "status"),
    [
        ("NotFound", grpc.StatusCode.NOT_FOUND, StatusCode.UNSET),  # the caller's mistake
        ("Internal", grpc.StatusCode.INTERNAL, StatusCode.ERROR),
        ("Crash", grpc.StatusCode.UNKNOWN, StatusCode.ERROR),
    ],
)
async def test_a_failed_call_records_its_code_and_only_server_faults_are_errors(
    served: tuple[grpc.aio.Channel, Probe],
    exported: InMemorySpanExporter,
    method: str,
    code: grpc.StatusCode,
    status: StatusCode,
) -> None:
    channel, _ = served
    assert await call(channel, method) == code
    span = only(exported)
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == code.value[0]
    assert span.status.status_code is status
    exceptions = [event for event in span.events if event.name == "exception"]
    if method == "Crash":  # an exception that escaped the servicer is on the span
        [exception] = exceptions
        assert exception.attributes is not None
        assert exception.attributes["exception.type"] == "ValueError"
    else:
        assert exceptions == []


async def test_a_streaming_call_is_one_span_current_for_every_response(
    served: tuple[grpc.aio.Channel, Probe], exported: InMemorySpanExporter
) -> None:
    channel, probe = served
    stream = channel.unary_stream(f"/{SERVICE}/Stream", None, None)
    responses = [r async for r in stream(b"x")]
    assert responses == [b"x", b"x"]
    span = only(exported)
    assert span.name == f"{SERVICE}/Stream"
    assert probe.inner == [span.context, span.context]
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == 0
