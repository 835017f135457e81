"""OTLP span export that encodes the common span shape without the SDK's cost.

The SDK's encoder builds each span as protobuf objects, at about 10-19 us a
span, as much as making the span. A traced scheduler exports five spans per
work request, from the same thread that serves requests. Nearly all of them
have one shape: scalar attributes, and no events, links or trace state.
`SpanEncoder` writes those straight to the protobuf wire format, scalar
attributes included (no protobuf object per value), and reuses the encoded
attributes that repeat (task names, workers, results). Protobuf then parses
the bytes in C. Every other span, and every resource and scope,
is left to the SDK's own `encode_spans`. Tests hold the output equal to the
SDK's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, cast

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, SpanFlags, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind
from opentelemetry.trace import Status as SpanStatus

Scalar: TypeAlias = str | bool | int | float

# Field keys (field number << 3 | wire type), as bytes.
_TRACE_ID = b"\x0a\x10"  # Span.trace_id: 1, 16 bytes
_SPAN_ID = b"\x12\x08"  # Span.span_id: 2, 8 bytes
_PARENT_SPAN_ID = b"\x22\x08"  # Span.parent_span_id: 4, 8 bytes
_NAME = b"\x2a"  # Span.name: 5
_KIND = b"\x30"  # Span.kind: 6, varint
_START, _END = 0x39, 0x41  # Span.start_time_unix_nano: 7 and end: 8, fixed64
_ATTRIBUTE = b"\x4a"  # Span.attributes: 9, repeated KeyValue
_STATUS = b"\x7a"  # Span.status: 15
_FLAGS = b"\x85\x01"  # Span.flags: 16, fixed32
_SPANS = b"\x12"  # ScopeSpans.spans: 2, repeated
_KEY, _VALUE = b"\x0a", b"\x12"  # KeyValue.key: 1, KeyValue.value: 2
# AnyValue's members: string 1, bool 2, int 3 (varint), double 4 (fixed64).
_STRING, _BOOL, _INT, _DOUBLE = b"\x0a", b"\x10", b"\x18", b"\x21"

_IDS = struct.Struct(">QQ")  # a 128-bit trace id as two big-endian halves
_ID = struct.Struct(">Q")
_TIMES = struct.Struct("<BQBQ")  # start and end, each with its key
_FLOAT = struct.Struct("<d")
_U64 = (1 << 64) - 1
_INT64 = range(-(1 << 63), 1 << 63)

_KIND_FIELDS = {
    kind: _KIND + bytes([code])
    for kind, code in (
        (SpanKind.INTERNAL, Span.SPAN_KIND_INTERNAL),
        (SpanKind.SERVER, Span.SPAN_KIND_SERVER),
        (SpanKind.CLIENT, Span.SPAN_KIND_CLIENT),
        (SpanKind.PRODUCER, Span.SPAN_KIND_PRODUCER),
        (SpanKind.CONSUMER, Span.SPAN_KIND_CONSUMER),
    )
}
_LOCAL_PARENT = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE_PARENT = _LOCAL_PARENT | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_LOCAL_FLAGS = _FLAGS + _LOCAL_PARENT.to_bytes(4, "little")
_REMOTE_FLAGS = _FLAGS + _REMOTE_PARENT.to_bytes(4, "little")
_CACHED = 4096  # encoded attributes (or names, statuses) kept; cleared when full


def _varint(value: int) -> bytes:
    """A non-negative integer in protobuf's base-128 varint encoding."""
    if value < len(_SMALL):
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The varints of span and attribute lengths and of most counts, encoded once
# (while the list is still empty `_varint` computes them).
_SMALL: list[bytes] = []
_SMALL.extend(_varint(n) for n in range(4096))


def _delimited(key: bytes, payload: bytes) -> bytes:
    return key + _varint(len(payload)) + payload


def _status_message(code: int, description: str | None) -> bytes:
    return Status(
        code=Status.StatusCode.ValueType(code), message=description or ""
    ).SerializeToString()


def _any_value(value: Scalar) -> bytes | None:
    """`value` as an encoded `AnyValue`, or None if the SDK must encode it.
    Its members are a oneof, so even a zero or empty value is written."""
    kind = value.__class__
    if kind is str:
        try:
            return _delimited(_STRING, cast(str, value).encode())
        except UnicodeEncodeError:
            return None
    if kind is bool:
        return _BOOL + (b"\x01" if value else b"\x00")
    if kind is int:
        return _INT + _varint(cast(int, value) & _U64) if value in _INT64 else None
    if kind is float:
        return _DOUBLE + _FLOAT.pack(value)
    return None


def _attribute(key: str, value: Scalar) -> bytes | None:
    """One `Span.attributes` entry on the wire, or None if the SDK must encode it."""
    encoded = _any_value(value)
    if encoded is None or not key:
        return None
    return _delimited(_ATTRIBUTE, _delimited(_KEY, key.encode()) + _delimited(_VALUE, encoded))


class SpanEncoder:
    """`encode_spans`, with the common span shape written directly."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[str, type, Scalar], bytes | None] = {}
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
        ):
            return self._by_sdk(span)
        attributes = []
        for key, value in (span.attributes or {}).items():
            encoded = self._attribute(key, cast(Scalar, value))
            if encoded is None:
                return self._by_sdk(span)
            attributes.append(encoded)
        trace_id, parent = context.trace_id, span.parent
        parts = [
            _TRACE_ID,
            _IDS.pack(trace_id >> 64, trace_id & _U64),
            _SPAN_ID,
            _ID.pack(context.span_id),
            self._name(span.name),
            _KIND_FIELDS[span.kind],
            _TIMES.pack(_START, start, _END, end),
            *attributes,
            self._status(status),
            _REMOTE_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS,
        ]
        if parent is not None:
            parts += (_PARENT_SPAN_ID, _ID.pack(parent.span_id))
        return _delimited(_SPANS, b"".join(parts))

    @staticmethod
    def _by_sdk(span: ReadableSpan) -> bytes:
        encoded: Span = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
        return _delimited(_SPANS, encoded.SerializeToString())

    def _name(self, name: str) -> bytes:
        return self._cached(self._names, name, lambda: _delimited(_NAME, name.encode()))

    def _status(self, status: SpanStatus) -> bytes:
        code, description = status.status_code.value, status.description
        return self._cached(
            self._statuses,
            (code, description),
            lambda: _delimited(_STATUS, _status_message(code, description)),
        )

    def _attribute(self, key: str, value: Scalar) -> bytes | None:
        """The entry for a scalar attribute (None for any other, and for
        those the SDK must encode), kept when seen before: names of tasks,
        workers and results repeat."""
        if value.__class__ not in _SCALARS:
            return None
        cache = self._attributes
        cache_key = (key, value.__class__, value)
        if cache_key in cache:
            return cache[cache_key]
        if len(cache) >= _CACHED:
            cache.clear()
        found = cache[cache_key] = _attribute(key, value)
        return found

    @staticmethod
    def _cached(cache: dict[Any, bytes], key: Any, encode: Callable[[], bytes]) -> bytes:
        found = cache.get(key)
        if found is None:
            if len(cache) >= _CACHED:
                cache.clear()
            found = cache[key] = encode()
        return found


_SCALARS = frozenset((str, bool, int, float))


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter (its configuration, retries and
    channel), translating spans with `SpanEncoder`."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = SpanEncoder()

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return self._encoder.encode(data)
