"""OTLP span export that encodes the common span shape without the SDK's cost.

The SDK's encoder builds each span as protobuf objects, at about 10-19 us a
span, as much as making the span. A traced scheduler exports five spans per
work request, from the same thread that serves requests. Nearly all of them
have one shape: scalar attributes, and no events, links or trace state.
`SpanEncoder` writes those straight to the protobuf wire format and reuses
the encoded attributes that repeat (task names, workers, results). Protobuf
then parses the bytes in C. Every other span, and every resource and scope,
is left to the SDK's own `encode_spans`. Tests hold the output equal to the
SDK's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, cast

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, SpanFlags, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind
from opentelemetry.trace import Status as SpanStatus

Scalar: TypeAlias = str | bool | int | float
_SCALARS = (str, bool, int, float)

# Field keys of `Span` (field number << 3 | wire type), as bytes.
_TRACE_ID = b"\x0a\x10"  # 1, 16 bytes
_SPAN_ID = b"\x12\x08"  # 2, 8 bytes
_PARENT_SPAN_ID = b"\x22\x08"  # 4, 8 bytes
_NAME = b"\x2a"  # 5
_KIND = b"\x30"  # 6, varint
_START = b"\x39"  # 7, fixed64
_END = b"\x41"  # 8, fixed64
_ATTRIBUTE = b"\x4a"  # 9, repeated
_STATUS = b"\x7a"  # 15
_FLAGS = b"\x85\x01"  # 16, fixed32
_SPANS = b"\x12"  # ScopeSpans.spans: 2, repeated

_KINDS = {
    SpanKind.INTERNAL: Span.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: Span.SPAN_KIND_SERVER,
    SpanKind.CLIENT: Span.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: Span.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: Span.SPAN_KIND_CONSUMER,
}
_LOCAL_PARENT = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE_PARENT = _LOCAL_PARENT | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_CACHED = 4096  # encoded attributes (or names, statuses) kept; cleared when full


def _varint(value: int) -> bytes:
    """A non-negative integer in protobuf's base-128 varint encoding."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(key: bytes, payload: bytes) -> bytes:
    return key + _varint(len(payload)) + payload


def _status_message(code: int, description: str | None) -> bytes:
    return Status(
        code=Status.StatusCode.ValueType(code), message=description or ""
    ).SerializeToString()


def _any_value(value: Scalar) -> AnyValue:
    # bool before int: a bool is an int
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


class SpanEncoder:
    """`encode_spans`, with the common span shape written directly."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[str, type, Scalar], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._statuses: dict[tuple[int, str | None], bytes] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        """The export request for `spans`, equal to `encode_spans(spans)`."""
        groups: dict[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]] = {}
        for span in spans:
            scopes = groups.setdefault(span.resource, {})
            scopes.setdefault(span.instrumentation_scope or None, []).append(span)
        request = ExportTraceServiceRequest()
        for scopes in groups.values():
            first, *others = (self._scope(members) for members in scopes.values())
            for other in others:
                first.scope_spans.extend(other.scope_spans)
            request.resource_spans.append(first)
        return request

    def _scope(self, members: list[ReadableSpan]) -> ResourceSpans:
        """Spans of one resource and scope; the SDK encodes those two."""
        encoded: ResourceSpans = encode_spans(members[:1]).resource_spans[0]
        scope_spans = encoded.scope_spans[0]
        del scope_spans.spans[:]
        scope_spans.MergeFromString(b"".join(self._span(span) for span in members))
        return encoded

    def _span(self, span: ReadableSpan) -> bytes:
        """One span as a `ScopeSpans.spans` entry on the wire."""
        context = span.context
        attributes = span.attributes or {}
        status = span.status
        start, end = span.start_time, span.end_time
        if (
            context is None
            or status is None
            or start is None
            or end is None
            or span.events
            or span.links
            or span.dropped_attributes
            or span.dropped_events
            or span.dropped_links
            or (context.trace_state is not None and len(context.trace_state))
            or not all(type(value) in _SCALARS for value in attributes.values())
        ):
            return _delimited(_SPANS, self._by_sdk(span).SerializeToString())
        parent = span.parent
        flags = _REMOTE_PARENT if parent is not None and parent.is_remote else _LOCAL_PARENT
        parts = [
            _TRACE_ID,
            context.trace_id.to_bytes(16, "big"),
            _SPAN_ID,
            context.span_id.to_bytes(8, "big"),
            self._name(span.name),
            _KIND + _varint(_KINDS[span.kind]),
            _START + start.to_bytes(8, "little"),
            _END + end.to_bytes(8, "little"),
            *(self._attribute(key, cast(Scalar, value)) for key, value in attributes.items()),
            self._status(status),
            _FLAGS + flags.to_bytes(4, "little"),
        ]
        if parent is not None:
            parts += (_PARENT_SPAN_ID, parent.span_id.to_bytes(8, "big"))
        return _delimited(_SPANS, b"".join(parts))

    @staticmethod
    def _by_sdk(span: ReadableSpan) -> Span:
        encoded: Span = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
        return encoded

    def _name(self, name: str) -> bytes:
        return self._cached(self._names, name, lambda: _delimited(_NAME, name.encode()))

    def _status(self, status: SpanStatus) -> bytes:
        code, description = status.status_code.value, status.description
        return self._cached(
            self._statuses,
            (code, description),
            lambda: _delimited(_STATUS, _status_message(code, description)),
        )

    def _attribute(self, key: str, value: Scalar) -> bytes:
        return self._cached(
            self._attributes,
            (key, type(value), value),
            lambda: _delimited(
                _ATTRIBUTE, KeyValue(key=key, value=_any_value(value)).SerializeToString()
            ),
        )

    @staticmethod
    def _cached(cache: dict[Any, bytes], key: Any, encode: Callable[[], bytes]) -> bytes:
        found = cache.get(key)
        if found is None:
            if len(cache) >= _CACHED:
                cache.clear()
            found = cache[key] = encode()
        return found


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter (its configuration, retries and
    channel), translating spans with `SpanEncoder`."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = SpanEncoder()

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return self._encoder.encode(data)
