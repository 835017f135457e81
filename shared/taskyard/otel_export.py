"""OTLP span export that writes the common span shape straight to the wire.

A traced scheduler exports five spans per work request, and encoding them
ran on the same GIL that serves requests. The SDK's encoder builds every span
as protobuf objects (about 7 us a span); the collector then needs bytes. Nearly
every span has one shape: scalar attributes, and no events, links or trace
state. `SpanEncoder` writes those in one pass of byte strings (about 1.5 us a
span): ids and times packed with `struct`, and the pieces that repeat (names,
statuses, attributes such as task and worker names) encoded once and kept;
keys whose values do not repeat (a request's id) are learnt and not kept.
The build compiles the same writer in C (`taskyard._span_wire`, a quarter of
the time, with the grouping of spans by resource and scope); the Python one
is its reference, and its fallback where the module cannot be imported. Any
other span is encoded by the SDK's own `encode_spans`, and so are a process's
resources and scopes, once each. The exporter also takes the `SpanRecord`s a
recorder hands a `SpanBatcher` in place of spans. Concatenated protobuf
messages merge, so the pieces join into one `ExportTraceServiceRequest` as
bytes, and `FastOTLPSpanExporter` sends them as they are: nothing is parsed
back and serialised again. Tests hold the result equal to the SDK's for every
span shape.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeAlias, TypeVar, cast

import grpc
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, SpanFlags, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    INVALID_SPAN_CONTEXT,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceState,
)
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.util.types import Attributes

from taskyard.span_recorder import SpanRecord

Scalar: TypeAlias = str | bool | int | float
_K = TypeVar("_K")
_V = TypeVar("_V")

# Field keys (field number << 3 | wire type), as bytes.
_RESOURCE_SPANS = b"\x0a"  # ExportTraceServiceRequest.resource_spans: 1
_SCOPE_SPANS = b"\x12"  # ResourceSpans.scope_spans: 2
_SPANS = b"\x12"  # ScopeSpans.spans: 2
_NAME = b"\x2a"  # Span.name: 5
_KIND = b"\x30"  # Span.kind: 6, varint
_ATTRIBUTE = b"\x4a"  # Span.attributes: 9, repeated KeyValue
_STATUS = b"\x7a"  # Span.status: 15
_FLAGS = b"\x85\x01"  # Span.flags: 16, fixed32
_PARENT_SPAN_ID = b"\x22\x08"  # Span.parent_span_id: 4, 8 bytes
_KEY, _VALUE = b"\x0a", b"\x12"  # KeyValue.key: 1, KeyValue.value: 2
# AnyValue's members: string 1, bool 2, int 3 (varint), double 4 (fixed64).
_STRING, _BOOL, _INT, _DOUBLE = b"\x0a", b"\x10", b"\x18", b"\x21"

# Span.trace_id (1, 16 bytes, as two big-endian halves) and span_id (2, 8 bytes).
_IDS = struct.Struct(">2sQQ2sQ")
_TRACE_ID, _SPAN_ID = b"\x0a\x10", b"\x12\x08"
_PARENT = struct.Struct(">Q")
_TIMES = struct.Struct("<BQBQ")  # start (7) and end (8), fixed64, each with its key
_START, _END = 0x39, 0x41
_FLOAT = struct.Struct("<d")
_U64 = (1 << 64) - 1
_INT64 = range(-(1 << 63), 1 << 63)

_KINDS = {
    SpanKind.INTERNAL: Span.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: Span.SPAN_KIND_SERVER,
    SpanKind.CLIENT: Span.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: Span.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: Span.SPAN_KIND_CONSUMER,
}
# What the compiled writer finds by identity, in the order of their OTLP values.
_KINDS_IN_ORDER = tuple(sorted(_KINDS, key=_KINDS.__getitem__))
_CODES_IN_ORDER = tuple(sorted(StatusCode, key=lambda code: code.value))
assert [_KINDS[kind] for kind in _KINDS_IN_ORDER] == [1, 2, 3, 4, 5]
assert [code.value for code in _CODES_IN_ORDER] == [
    Status.STATUS_CODE_UNSET,
    Status.STATUS_CODE_OK,
    Status.STATUS_CODE_ERROR,
]
# The compiled writer's arguments after the spans and its fallback.
_SHAPES = (ReadableSpan, SpanRecord, _KINDS_IN_ORDER, _CODES_IN_ORDER, DEFAULT_TRACE_STATE)
_LOCAL_PARENT = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE_PARENT = _LOCAL_PARENT | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_CACHED = 4096  # encoded pieces kept; cleared when full


# What an export takes: spans, and the records that stand for them.
Exported: TypeAlias = ReadableSpan | SpanRecord
_Writer: TypeAlias = Callable[
    [
        Sequence[Exported],
        Callable[[Exported], bytes],
        type,
        type,
        tuple[SpanKind, ...],
        tuple[StatusCode, ...],
        TraceState,
    ],
    bytes,
]


class Compiled(NamedTuple):
    """The C writer of the common span shape, and its grouping of spans by
    the resource and scope objects they share (see `_span_wire.c`)."""

    encode: _Writer
    group: Callable[[Sequence[Exported], type, type], list[list[Exported]]]


def _compiled() -> Compiled | None:
    """The compiled writer, if the package was built with it."""
    try:
        from taskyard._span_wire import encode, group  # noqa: PLC0415
    except ImportError:
        return None
    return Compiled(encode, group)


COMPILED = _compiled()


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


_Fields: TypeAlias = tuple[str, SpanKind, SpanContext, SpanContext | None, int, int]


def _status_and_flags(status: SpanStatus, remote_parent: bool | None) -> bytes:
    """A span's status and flags, and the key of its parent's id if it has
    one (`remote_parent` None: it has none)."""
    message = Status(
        code=Status.StatusCode.ValueType(status.status_code.value),
        message=status.description or "",
    ).SerializeToString()
    flags = _REMOTE_PARENT if remote_parent else _LOCAL_PARENT
    return (
        _delimited(_STATUS, message)
        + _FLAGS
        + flags.to_bytes(4, "little")
        + (_PARENT_SPAN_ID if remote_parent is not None else b"")
    )


class SpanEncoder:
    """`encode_spans`, as serialised bytes, with the common span shape written directly."""

    def __init__(self, compiled: Compiled | None = COMPILED) -> None:
        """`compiled` groups spans and writes the common shape (default: the
        module built with the package, if it was); None: this class does."""
        self._compiled = compiled
        self._attributes: dict[tuple[str, object], tuple[type, bytes]] = {}
        # Keys whose values rarely repeat (a request's id): not worth keeping,
        # and keeping them would push out the values that do.
        self._volatile: set[str] = set()
        self._heads: dict[tuple[str, int], bytes] = {}
        self._tails: dict[int, tuple[SpanStatus, tuple[bytes, bytes, bytes]]] = {}
        self._headers: dict[tuple[int, int], tuple[Resource, object, bytes, bytes]] = {}

    def encode(self, spans: Sequence[Exported]) -> bytes:
        """The serialised export request for `spans`: `encode_spans(spans)`,
        grouped by resource and then scope in order of first appearance."""
        return b"".join(
            _delimited(_RESOURCE_SPANS, self._resource(scopes))
            for scopes in _grouped(spans, self._by_identity(spans)).values()
        )

    def _resource(self, scopes: dict[InstrumentationScope | None, list[Exported]]) -> bytes:
        """One `ResourceSpans`: the resource and each scope as the SDK encodes
        them, each scope followed by its spans."""
        resource = b""
        entries = []
        for members in scopes.values():
            resource, scope = self._header(members[0])
            entries.append(_delimited(_SCOPE_SPANS, scope + self._spans(members)))
        return resource + b"".join(entries)

    def _header(self, member: Exported) -> tuple[bytes, bytes]:
        """The resource (without its scopes) and the scope (without its spans)
        of `member`, encoded by the SDK once for each pair of objects (kept
        with the entry, so their ids cannot be reused meanwhile)."""
        resource, scope = member.resource, member.instrumentation_scope
        found = self._headers.get((id(resource), id(scope)))
        if found is None or found[0] is not resource or found[1] is not scope:
            stand_in = ReadableSpan(
                "", INVALID_SPAN_CONTEXT, resource=resource, instrumentation_scope=scope
            )
            encoded: ResourceSpans = encode_spans([stand_in]).resource_spans[0]
            scope_spans = encoded.scope_spans[0]
            del scope_spans.spans[:]
            scope_bytes = scope_spans.SerializeToString()
            del encoded.scope_spans[:]
            found = (resource, scope, encoded.SerializeToString(), scope_bytes)
            self._keep(self._headers, (id(resource), id(scope)), found)
        return found[2], found[3]

    def _spans(self, spans: list[Exported]) -> bytes:
        """The `ScopeSpans.spans` entries of `spans`, joined."""
        if self._compiled is not None:
            return self._compiled.encode(spans, self._span, *_SHAPES)
        return b"".join([self._span(span) for span in spans])

    def _by_identity(self, spans: Sequence[Exported]) -> list[list[Exported]]:
        """Spans in lists by the resource and scope objects they share, in
        order of first appearance."""
        if self._compiled is not None:
            return self._compiled.group(spans, ReadableSpan, SpanRecord)
        by_identity: dict[tuple[int, int], list[Exported]] = {}
        for span in spans:
            key = (id(span.resource), id(span.instrumentation_scope))
            members = by_identity.get(key)
            if members is None:
                by_identity[key] = [span]
            else:
                members.append(span)
        return list(by_identity.values())

    def _span(self, span: Exported) -> bytes:
        """One span (or the record of one) as a `ScopeSpans.spans` entry on the wire."""
        if isinstance(span, SpanRecord):
            span = span.as_span()
        if span.__class__ is ReadableSpan:
            # Made by the recorder (the SDK's own spans are a subclass): its
            # fields are read directly, past the properties that copy them
            # (attributes, events, links) or test them against ABCs (dropped
            # counts). The encoder tests hold this to the SDK's encoding.
            attributes, context = span._attributes, span._context
            start, end = span._start_time, span._end_time
            if (
                attributes.__class__ is dict
                and not span._events
                and not span._links
                and context is not None
                and start is not None
                and end is not None
            ):
                fields = (span._name, span._kind, context, span._parent, start, end)
                encoded = self._common(fields, attributes, span._status)
                return encoded or self._by_sdk(span)
        return self._general(span)

    def _general(self, span: ReadableSpan) -> bytes:
        """A span of any class, through its public properties."""
        context, start, end = span.context, span.start_time, span.end_time
        if (
            context is None
            or start is None
            or end is None
            or span.events
            or span.links
            or span.dropped_attributes
            or span.dropped_events
            or span.dropped_links
        ):
            return self._by_sdk(span)
        fields = (span.name, span.kind, context, span.parent, start, end)
        return self._common(fields, span.attributes, span.status) or self._by_sdk(span)

    def _common(self, fields: _Fields, attributes: Attributes, status: SpanStatus) -> bytes:
        """A span of the common shape on the wire, or b"" if it is not of it
        (trace state, or an attribute the SDK must encode)."""
        name, kind, context, parent, start, end = fields
        # A SpanContext is the tuple its type declares.
        trace_id, span_id, _, _, state, _ = context
        if state is not DEFAULT_TRACE_STATE and state:
            return b""
        head = self._heads.get((name, id(kind)))  # identity: an enum's hash is a Python call
        if head is None:
            head = _delimited(_NAME, name.encode()) + _KIND + _varint(_KINDS[kind])
            self._keep(self._heads, (name, id(kind)), head)
        parts = [
            _IDS.pack(_TRACE_ID, trace_id >> 64, trace_id & _U64, _SPAN_ID, span_id),
            head,
            _TIMES.pack(_START, start, _END, end),
        ]
        if attributes:
            known = self._attributes
            for item in attributes.items():
                # Most attributes repeat (task, attempt, worker, outcome). An
                # entry is kept with its value's type, since (key, True) and
                # (key, 1) are equal keys.
                try:
                    found = known.get(item)
                except TypeError:  # an unhashable value, such as a list
                    return b""
                if found is not None and found[0] is item[1].__class__:
                    parts.append(found[1])
                    continue
                encoded = self._attribute(*item)
                if encoded is None:
                    return b""
                parts.append(encoded)
        tails = self._tail(status)
        if parent is None:
            parts.append(tails[0])
        else:
            _, parent_id, remote, _, _, _ = parent
            parts += (tails[2 if remote else 1], _PARENT.pack(parent_id))
        body = b"".join(parts)
        size = len(body)
        return _SPANS + (_SMALL[size] if size < len(_SMALL) else _varint(size)) + body

    @staticmethod
    def _by_sdk(span: ReadableSpan) -> bytes:
        encoded: Span = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0]
        return _delimited(_SPANS, encoded.SerializeToString())

    def _head(self, name: str, kind: SpanKind) -> bytes:
        """The name and kind of a span (kinds are keyed by identity: hashing
        an enum member is a Python call)."""
        key = (name, id(kind))
        found = self._heads.get(key)
        if found is None:
            found = _delimited(_NAME, name.encode()) + _KIND + _varint(_KINDS[kind])
            self._keep(self._heads, key, found)
        return found

    def _tail(self, status: SpanStatus) -> tuple[bytes, bytes, bytes]:
        """A span's status and flags (and its parent's key): without a parent,
        with a local one, with a remote one. Found by the status object (kept
        with its entry, so its id cannot be reused meanwhile): spans share a
        few, and reading a status's code and description are Python calls."""
        found = self._tails.get(id(status))
        if found is None or found[0] is not status:
            found = (
                status,
                (
                    _status_and_flags(status, None),
                    _status_and_flags(status, False),
                    _status_and_flags(status, True),
                ),
            )
            self._keep(self._tails, id(status), found)
        return found[1]

    def _attribute(self, key: str, value: object) -> bytes | None:
        """The entry for a scalar attribute seen first (None for any other,
        and for those the SDK must encode), kept for when it repeats, unless
        its key's values seldom do."""
        if not isinstance(value, str | bool | int | float):
            return None
        encoded = _attribute(key, value)
        if encoded is not None and key not in self._volatile:
            self._remember(key, value, encoded)
        return encoded

    def _remember(self, key: str, value: Scalar, encoded: bytes) -> None:
        known = self._attributes
        if len(known) >= _CACHED:  # full: start again, without the keys that filled it
            self._volatile.update(_crowding(known))
            known.clear()
            if key in self._volatile:
                return
        known[(key, value)] = (value.__class__, encoded)

    @staticmethod
    def _keep(cache: dict[_K, _V], key: _K, value: _V) -> None:
        """Keep `value`; past the limit start again (values that never
        repeat, such as request ids, would otherwise grow the cache forever)."""
        if len(cache) >= _CACHED:
            cache.clear()
        cache[key] = value


def _crowding(cache: dict[tuple[str, object], tuple[type, bytes]]) -> set[str]:
    """The keys holding a quarter or more of a full attribute cache."""
    counts = Counter(key for key, _ in cache)
    return {key for key, count in counts.items() if count >= len(cache) // 4}


def _grouped(
    spans: Sequence[Exported], runs: list[list[Exported]]
) -> dict[Resource, dict[InstrumentationScope | None, list[Exported]]]:
    """Spans by resource, then scope, as the SDK groups them (by equality, in
    order of first appearance), from their `runs` by resource and scope
    object (also in order of first appearance). A process's spans share a
    few of those, so they are grouped by identity first: hashing a resource
    or scope for every span costs more than encoding it."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[Exported]]] = {}
    for members in runs:
        scopes = grouped.setdefault(members[0].resource, {})
        scope = members[0].instrumentation_scope
        if scope in scopes:  # equal objects, not the same one: mixed order
            return _grouped_by_equality(spans)
        scopes[scope] = members
    return grouped


def _grouped_by_equality(
    spans: Sequence[Exported],
) -> dict[Resource, dict[InstrumentationScope | None, list[Exported]]]:
    grouped: dict[Resource, dict[InstrumentationScope | None, list[Exported]]] = {}
    for span in spans:
        scopes = grouped.setdefault(span.resource, {})
        scopes.setdefault(span.instrumentation_scope, []).append(span)
    return grouped


class _RawTraceService:
    """The collector's `Export`, sending a request that is already bytes."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter (its configuration, retries and
    reconnection), sending what `SpanEncoder` wrote."""

    takes_records = True  # a `SpanBatcher` may hand it `SpanRecord`s

    def __init__(self) -> None:
        self._encoder = SpanEncoder()
        super().__init__()

    def _initialize_channel_and_stub(self) -> None:
        """The SDK's channel (made at start and again on reconnecting), with a
        client that sends the request as the encoder wrote it."""
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        channel: grpc.Channel = self._channel  # type: ignore[assignment]  # untyped in the SDK
        self._client = _RawTraceService(channel)  # type: ignore[assignment]

    def _translate_data(self, data: Sequence[Exported]) -> bytes:  # type: ignore[override]
        return self._encoder.encode(data)
