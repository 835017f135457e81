"""The fast span encoder gives exactly what the SDK's encoder gives."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from taskyard.otel_export import SpanEncoder
from taskyard.span_recorder import RecordingTracerProvider
from taskyard.telemetry import context_from
from taskyard.trace_context import span_context_from

REMOTE_PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
WITH_STATE = {**REMOTE_PARENT, "tracestate": "vendor=value"}


def spans_of(resource: Resource) -> tuple[ReadableSpan, ...]:
    """Spans of every shape the encoder treats apart, from one provider."""
    exporter = InMemorySpanExporter()
    provider = RecordingTracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer, other_scope = provider.get_tracer("one"), provider.get_tracer("two", "1.0")
    scalars: dict[str, AttributeValue] = {
        "s": "noop",
        "i": -3,
        "big": 2**62,
        "f": 0.5,
        "yes": True,
        "no": False,
        # oneof members are written even when zero or empty; limits of int64
        "zero": 0,
        "least": -(2**63),
        "most": 2**63 - 1,
        "f0": 0.0,
        "tiny": -1.5e-300,
        "empty": "",
        "unicode": "h\u00e9llo \u2713",
        "long": "x" * 300,  # lengths past one varint byte
    }
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=scalars):
        other_scope.start_span("child", kind=SpanKind.CLIENT).end()
        failed = tracer.start_span("failed")
        failed.set_status(StatusCode.ERROR, "it broke")
        failed.end()
        ok = tracer.start_span("ok", attributes={"empty": ""})
        ok.set_status(StatusCode.OK)
        ok.end()
    tracer.start_span("remote child", context_from(REMOTE_PARENT)).end()
    tracer.start_span("with trace state", context_from(WITH_STATE)).end()
    tracer.start_span("sequence", attributes={"list": [1, 2], "s": "x"}).end()
    with tracer.start_as_current_span("with event") as span:
        span.add_event("happened", {"n": 1})
        linked = span.get_span_context()
    tracer.start_span("with link", links=[Link(linked, {"why": "retry"})]).end()
    recorder = provider.recorder("recorded")
    recorder.record("recorded", {"taskyard.task": "noop"}, span_context_from(REMOTE_PARENT), 10, 20)
    # A recorded span keeps the dict it was given: a list stays a list.
    recorder.record("recorded list", {"list": [1, 2], "s": "x"}, None, 10, 20)
    provider.shutdown()
    return exporter.get_finished_spans()


def decoded(request: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(request)


@pytest.fixture
def mixed() -> list[ReadableSpan]:
    first = spans_of(Resource.create({"service.name": "first"}))
    second = spans_of(Resource.create({"service.name": "second"}))
    return [*first, *second[:3], *first[:2], *second[3:]]


def test_every_shape_encodes_as_the_sdk_encodes_it(mixed: list[ReadableSpan]) -> None:
    assert decoded(SpanEncoder().encode(mixed)) == encode_spans(mixed)


def test_an_encoder_gives_the_same_again_and_past_its_cache() -> None:
    provider = RecordingTracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = provider.recorder("many")
    for n in range(5000):  # more distinct attributes than the encoder keeps
        recorder.record(f"span {n % 7}", {"n": n, "task": "noop"}, None)
    spans = exporter.get_finished_spans()
    encoder = SpanEncoder()
    for batch in (spans[:512], spans, spans[:512]):
        assert decoded(encoder.encode(batch)) == encode_spans(batch)
    # Past the limit, a key whose values never repeat is no longer kept, so
    # it cannot push out the values that do.
    kept = {key for key, _ in encoder._attributes}
    assert kept == {"task"}


def test_nothing_encodes_as_nothing() -> None:
    assert decoded(SpanEncoder().encode([])) == encode_spans([])


def test_equal_resources_of_different_objects_group_as_the_sdk_groups_them() -> None:
    one = spans_of(Resource.create({"service.name": "same"}))
    other = spans_of(Resource.create({"service.name": "same"}))
    assert one[0].resource is not other[0].resource
    interleaved = [span for pair in zip(one, other, strict=True) for span in pair]
    assert decoded(SpanEncoder().encode(interleaved)) == encode_spans(interleaved)
