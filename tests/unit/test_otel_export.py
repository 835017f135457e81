"""The fast span encoder gives exactly what the SDK's encoder gives, with
the common span shape written in C or in Python."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from taskyard.otel_export import COMPILED, Compiled, Exported, SpanEncoder
from taskyard.span_recorder import RecordingTracerProvider, SpanRecord
from taskyard.telemetry import context_from
from taskyard.trace_context import span_context_from

REMOTE_PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
WITH_STATE = {**REMOTE_PARENT, "tracestate": "vendor=value"}


@pytest.fixture(params=["compiled", "python"])
def encoder(request: pytest.FixtureRequest) -> SpanEncoder:
    """An encoder writing the common shape in C, or in Python."""
    return SpanEncoder(COMPILED if request.param == "compiled" else None)


def test_the_package_is_built_with_its_compiled_writer() -> None:
    assert COMPILED is not None


def common_spans() -> tuple[ReadableSpan, ...]:
    """Recorded spans of the common shape: every scalar type, each kind of
    parent, each status."""
    exporter = InMemorySpanExporter()
    provider = RecordingTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = provider.recorder("common")
    scalars: dict[str, AttributeValue] = {
        "s": "noop", "unicode": "h\u00e9llo", "empty": "", "long": "x" * 300,
        "yes": True, "no": False, "zero": 0, "least": -(2**63), "most": 2**63 - 1,
        "f": -1.5e-300, "f0": 0.0,
    }  # fmt: skip
    recorder.record("remote parent", scalars, span_context_from(REMOTE_PARENT), 10, 20)
    recorder.record("no parent", {}, None, 2**63, 2**64 - 1)
    for kind, (code, description) in zip(
        (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.CONSUMER),
        ((StatusCode.ERROR, "it broke"), (StatusCode.OK, None), (StatusCode.ERROR, None)),
        strict=True,
    ):
        with recorder.current("submit", {"k": 1}) as parent:
            child = recorder.start("local parent", {"k": 2}, kind=kind)
            child.set_status(code, description)
            child.end()
        assert parent.is_recording() is False
    return exporter.get_finished_spans()


def test_the_compiled_writer_writes_the_common_shape_itself_as_python_does() -> None:
    def refused(span: Exported) -> bytes:
        raise AssertionError(f"{span.name} was left to Python")

    assert COMPILED is not None
    compiled = COMPILED

    def compiled_only(spans: Sequence[Exported], _: object, *shapes: Any) -> bytes:
        return compiled.encode(spans, refused, *shapes)

    spans = common_spans()
    for exported in (spans, as_records(spans)):
        written = SpanEncoder(Compiled(compiled_only, compiled.group)).encode(exported)
        assert written == SpanEncoder(None).encode(exported)
        assert decoded(written) == encode_spans(spans)


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


def test_every_shape_encodes_as_the_sdk_encodes_it(
    encoder: SpanEncoder, mixed: list[ReadableSpan]
) -> None:
    assert decoded(encoder.encode(mixed)) == encode_spans(mixed)


def record_of(span: ReadableSpan) -> SpanRecord:
    """The record that stands for `span` (which has no events or links)."""
    assert span.context is not None
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.instrumentation_scope is not None
    return SpanRecord(
        span.name,
        span.kind,
        span.context,
        span.parent,
        span.start_time,
        span.end_time,
        dict(span.attributes or {}),
        span.status,
        span.resource,
        span.instrumentation_scope,
    )


def as_records(spans: Sequence[ReadableSpan]) -> list[Exported]:
    """Every span that a record can stand for, as its record."""
    return [span if span.events or span.links else record_of(span) for span in spans]


def test_records_encode_as_the_sdk_encodes_the_spans_they_stand_for(
    encoder: SpanEncoder, mixed: list[ReadableSpan]
) -> None:
    records = as_records(mixed)
    assert any(isinstance(record, SpanRecord) for record in records)
    assert decoded(encoder.encode(records)) == encode_spans(mixed)


def test_a_span_too_large_for_the_writers_buffers_encodes_as_the_sdk_encodes_it(
    encoder: SpanEncoder,
) -> None:
    provider = RecordingTracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    attributes: dict[str, AttributeValue] = {f"key {n}": "v" * n for n in range(200)}
    provider.recorder("large").record("n" * 5000, attributes, None)
    spans = exporter.get_finished_spans()
    assert decoded(encoder.encode(spans)) == encode_spans(spans)


def test_an_encoder_gives_the_same_again_and_past_its_cache() -> None:
    provider = RecordingTracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = provider.recorder("many")
    for n in range(5000):  # more distinct attributes than the encoder keeps
        recorder.record(f"span {n % 7}", {"n": n, "task": "noop"}, None)
    spans = exporter.get_finished_spans()
    encoder = SpanEncoder(None)
    for batch in (spans[:512], spans, spans[:512]):
        assert decoded(encoder.encode(batch)) == encode_spans(batch)
    # Past the limit, a key whose values never repeat is no longer kept, so
    # it cannot push out the values that do.
    kept = {key for key, _ in encoder._attributes}
    assert kept == {"task"}


def test_nothing_encodes_as_nothing(encoder: SpanEncoder) -> None:
    assert decoded(encoder.encode([])) == encode_spans([])


def test_equal_resources_of_different_objects_group_as_the_sdk_groups_them(
    encoder: SpanEncoder,
) -> None:
    one = spans_of(Resource.create({"service.name": "same"}))
    other = spans_of(Resource.create({"service.name": "same"}))
    assert one[0].resource is not other[0].resource
    interleaved = [span for pair in zip(one, other, strict=True) for span in pair]
    assert decoded(encoder.encode(interleaved)) == encode_spans(interleaved)
