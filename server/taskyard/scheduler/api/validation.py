"""Every field of every request, checked against `taskyard.limits` at the edge.

One walk over a request message, driven by its descriptor: strings (length,
no NUL: PostgreSQL cannot store it), bytes, repeated fields, enums (only
defined values), integers (ranges), Durations and Timestamps (within
protobuf's range and the field's maximum) and JSON text (`safe_json`).
Nothing reaches a use case that could break a later read, a store or a
restart. All violations of a message are reported together.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from taskyard import limits
from taskyard.errors import FieldViolation, InvalidArgumentError
from taskyard.safe_json import JsonLimitError, loads

#: google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP, _MAX_TIMESTAMP = -62_135_596_800, 253_402_300_799
_MAX_DURATION = 315_576_000_000
_DURATION_NAME = "google.protobuf.Duration"
_DEFAULT = limits.Rule()
#: The reason of a refusal by the field at fault, where clients know a more
#: precise one than FIELD_INVALID.
_REASONS = {"task_data_json": "TASK_DATA_INVALID"}
_STRING, _BYTES, _MESSAGE, _ENUM = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_MESSAGE,
    FieldDescriptor.TYPE_ENUM,
)


def check(message: Message) -> None:
    """Raise InvalidArgumentError (one field violation each) unless every
    field of `message` is within its limits."""
    violations: list[FieldViolation] = []
    _walk(message, "", violations)
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InvalidArgumentError(
            f"{first.field}: {first.description}{more}",
            reason=_REASONS.get(first.field.split(".")[-1], "FIELD_INVALID"),
            violations=violations[:100],
        )


def _walk(message: Message, prefix: str, out: list[FieldViolation]) -> None:
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        _timestamp(message, prefix, out)
        return
    for field, value in message.ListFields():
        rule = limits.RULES.get(field.full_name, _DEFAULT)
        where = f"{prefix}{field.name}"
        if field.is_repeated:
            maximum = rule.max_items or limits.MAX_ITEMS
            if len(value) > maximum:
                out.append(FieldViolation(where, f"has {len(value)} items; at most {maximum}"))
                continue
            for index, item in enumerate(value):
                _one(field, rule, item, f"{where}[{index}]", out)
        else:
            _one(field, rule, value, where, out)


def _one(
    field: FieldDescriptor, rule: limits.Rule, value: Any, where: str, out: list[FieldViolation]
) -> None:
    kind = field.type
    if kind == _STRING:
        _string(rule, value, where, out)
    elif kind == _BYTES:
        maximum = rule.max_length or limits.MAX_BYTES
        if len(value) > maximum:
            out.append(FieldViolation(where, f"is {len(value)} bytes; at most {maximum}"))
    elif kind == _ENUM:
        enum = field.enum_type
        if enum is not None and value not in enum.values_by_number:
            out.append(FieldViolation(where, f"{value} is not a {enum.name} value"))
    elif kind == _MESSAGE:
        if field.message_type is not None and field.message_type.full_name == _DURATION_NAME:
            _duration(rule, value, where, out)
        else:
            _walk(value, where + ".", out)
    elif isinstance(value, int) and not isinstance(value, bool):
        _integer(rule, value, where, out)


def _string(rule: limits.Rule, value: str, where: str, out: list[FieldViolation]) -> None:
    if rule.json is not None:
        try:
            loads(value, rule.json) if value else None
        except JsonLimitError as error:
            out.append(FieldViolation(where, str(error)))
        return
    maximum = rule.max_length or limits.MAX_STRING
    if len(value) > maximum:
        out.append(FieldViolation(where, f"is {len(value)} characters; at most {maximum}"))
    elif "\0" in value:
        out.append(FieldViolation(where, "must not contain NUL characters"))


def _integer(rule: limits.Rule, value: int, where: str, out: list[FieldViolation]) -> None:
    if rule.minimum is not None and value < rule.minimum:
        out.append(FieldViolation(where, f"is {value}; at least {rule.minimum}"))
    elif rule.maximum is not None and value > rule.maximum:
        out.append(FieldViolation(where, f"is {value}; at most {rule.maximum}"))


def _duration(rule: limits.Rule, value: Any, where: str, out: list[FieldViolation]) -> None:
    seconds, nanos = value.seconds, value.nanos
    valid = (
        abs(seconds) <= _MAX_DURATION
        and abs(nanos) < 1_000_000_000
        and (seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0))
    )
    if not valid:
        out.append(FieldViolation(where, "is not a valid Duration"))
        return
    total = seconds + nanos / 1e9
    if rule.max_seconds is not None and not 0 < total <= rule.max_seconds:
        out.append(FieldViolation(where, f"must be more than 0 and at most {rule.max_seconds:g}s"))


def _timestamp(value: Any, where: str, out: list[FieldViolation]) -> None:
    if not (_MIN_TIMESTAMP <= value.seconds <= _MAX_TIMESTAMP and 0 <= value.nanos < 1_000_000_000):
        out.append(FieldViolation(where.rstrip("."), "is not a valid Timestamp"))
