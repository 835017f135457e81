"""Hypothesis strategies for every request message, built from its descriptor.

Values lean to what breaks servers: JSON with lone surrogate escapes, deep
nesting and huge numbers, strings with NUL and over the limits, integers and
enums at and past their ends, Durations and Timestamps out of range.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT_EDGES = [0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1]
NASTY_JSON = [
    '{"y": "\\udfff"}',
    '{"\\ud800": 1}',
    "[" * 2000 + "]" * 2000,
    '{"a": ' * 60 + "1" + "}" * 60,
    '{"n": ' + "9" * 5000 + "}",
    '{"n": 1e999}',
    '{"n": NaN}',
    "[1, 2]",
    "null",
    "{not json",
    '{"sleep": 0}',
    '{"result": false}',
    '{"command": ["true"]}',
    "",
    "{}",
]
STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "noop", "command", "\0", "a\0b", "../..", "x" * 5000, "taskyard:x"]),
    st.sampled_from(NASTY_JSON),
    st.builds(json.dumps, st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    )),
)  # fmt: skip


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64) | st.just(b"\0" * (1024 * 1024 + 1))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True)
    unsigned = kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64)
    bits = 32 if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT32) else 64
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    edges = [v for v in INT_EDGES if low <= v <= high]
    return (
        st.sampled_from(edges)
        | st.integers(low, high)
        | st.integers(-5, 300).filter(lambda v: low <= v <= high)
    )


def _time(descriptor: Descriptor) -> st.SearchStrategy[dict[str, int]]:
    seconds = st.sampled_from([0, 1, -1, 60, 2**62, -(2**62), 315_576_000_001, 253_402_300_800])
    nanos = st.sampled_from([0, 1, -1, 999_999_999, 1_000_000_000, -(2**31)])
    return st.fixed_dictionaries(
        {"seconds": seconds | st.integers(-(2**40), 2**40), "nanos": nanos}
    )


def message_dict(descriptor: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values of a message, as keyword arguments for its class."""
    if descriptor.full_name in ("google.protobuf.Duration", "google.protobuf.Timestamp"):
        return _time(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 3 or field.message_type is None:
                continue
            value: st.SearchStrategy[Any] = _nested(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        if field.is_repeated:
            many = st.lists(value, min_size=300, max_size=1200)
            value = st.one_of(*[st.lists(value, max_size=3)] * 9, many)  # many: now and then
        fields[field.name] = value
    oneofs = {f.name for o in descriptor.oneofs for f in o.fields}
    plain = {k: v for k, v in fields.items() if k not in oneofs}
    chosen = st.fixed_dictionaries({}, optional=plain)
    if oneofs:
        one = st.sampled_from(sorted(oneofs & set(fields))).flatmap(
            lambda name: fields[name].map(lambda value: {name: value})
        )
        chosen = st.tuples(chosen, one | st.just({})).map(lambda pair: {**pair[0], **pair[1]})
    return chosen


def _nested(descriptor: Any, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.deferred(lambda: message_dict(descriptor, depth))


def build(message_class: type[Message], values: dict[str, Any]) -> Message | None:
    """The message, or None when protobuf itself refuses the values (a client
    library cannot send those)."""
    try:
        return message_class(**values)
    except (ValueError, TypeError, OverflowError):
        return None


def messages(message_class: type[Message]) -> st.SearchStrategy[Message | None]:
    """Instances of `message_class` (None for values protobuf refuses)."""
    return message_dict(message_class.DESCRIPTOR).map(lambda values: build(message_class, values))


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` truncated, with a byte flipped, or random bytes."""
    truncated = st.integers(0, max(0, len(data) - 1)).map(lambda n: data[:n])
    flipped = st.tuples(st.integers(0, max(0, len(data) - 1)), st.integers(0, 255)).map(
        lambda p: data[: p[0]] + bytes([p[1]]) + data[p[0] + 1 :] if data else bytes([p[1]])
    )
    return truncated | flipped | st.binary(max_size=64)
