"""The common OTLP span shape written in C (see `_span_wire.c`)."""

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode, TraceState

def encode(
    spans: Sequence[Any],
    fallback: Callable[[ReadableSpan], bytes],
    span_type: type,
    record_type: type,
    kinds: tuple[SpanKind, ...],
    codes: tuple[StatusCode, ...],
    default_state: TraceState,
    /,
) -> bytes: ...
def group(spans: Sequence[Any], span_type: type, record_type: type, /) -> list[list[Any]]: ...
