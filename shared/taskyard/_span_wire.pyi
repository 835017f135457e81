"""The common OTLP span shape written in C (see `_span_wire.c`)."""

from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode, TraceState

def encode(
    spans: Sequence[ReadableSpan],
    fallback: Callable[[ReadableSpan], bytes],
    span_type: type,
    kinds: tuple[SpanKind, ...],
    codes: tuple[StatusCode, ...],
    default_state: TraceState,
    /,
) -> bytes: ...
def group(spans: Sequence[ReadableSpan], span_type: type, /) -> list[list[ReadableSpan]]: ...
