"""W3C trace context as Taskyard stores it and the wire contract carries it.

A work request keeps the `traceparent` (and `tracestate`) of its submit span,
and an assignment carries it to the worker (`taskyard.v1.TraceContext`),
whatever propagators `OTEL_PROPAGATORS` sets for the process's own RPCs.
Only the OpenTelemetry API: the scheduler's core uses this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

_W3C = TraceContextTextMapPropagator()
# A `traceparent` exactly as `w3c_carrier` writes it (version 00, lowercase hex).
_OWN_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_FLAGS = [TraceFlags(flags) for flags in range(256)]


def w3c_carrier(context: SpanContext) -> dict[str, str]:
    """The W3C trace context (`traceparent`, and `tracestate` if any) of a
    span, written from its ids at once: a traced scheduler stores one per
    request."""
    carrier = {
        "traceparent": (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        )
    }
    if context.trace_state:
        carrier["tracestate"] = context.trace_state.to_header()
    return carrier


def span_context_from(carrier: Mapping[str, str]) -> SpanContext:
    """The remote span context in a W3C carrier (an invalid one if there is none).

    A carrier as `w3c_carrier` wrote it is read at once (a traced scheduler
    reads one back for every assignment and completion, in about a quarter of
    the propagator's time); any other form is left to the SDK's propagator.
    """
    found = _OWN_TRACEPARENT.fullmatch(carrier.get("traceparent", ""))
    if found is None:
        return trace.get_current_span(_W3C.extract(dict(carrier))).get_span_context()
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not (trace_id and span_id):
        return trace.INVALID_SPAN_CONTEXT
    state = carrier.get("tracestate")
    return SpanContext(
        trace_id,
        span_id,
        True,
        _FLAGS[int(found[3], 16)],
        TraceState.from_header([state]) if state else None,
    )
