"""Application spans of the scheduler, each a child of the work request's trace.

The submit span's W3C trace context is stored with the work request, so spans
made later, after a restart, or for another attempt, still join that one
trace.
"""

from __future__ import annotations

import contextlib
import functools
from contextlib import AbstractContextManager
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext
from opentelemetry.util.types import AttributeValue

from taskyard.scheduler.domain import WorkRequest
from taskyard.span_recorder import ChildSpans, RecordingTracerProvider, SpanRecorder
from taskyard.trace_context import span_context_from, w3c_carrier

SCOPE = "taskyard.scheduler"

Attributes = dict[str, AttributeValue]
_NO_TRACE = Context()  # no span in it


def recorder() -> SpanRecorder | None:
    """What records the scheduler's spans: only when traces are exported.

    Without it nothing is made, not even the API's no-op spans, which still
    cost tens of microseconds each, on every request.
    """
    return _recorder_of(trace.get_tracer_provider())


@functools.lru_cache(maxsize=4)
def _recorder_of(provider: trace.TracerProvider) -> SpanRecorder | None:
    """Found once per provider (a traced request looks three times)."""
    if isinstance(provider, RecordingTracerProvider):
        return provider.recorder(SCOPE)
    return None


class RequestSpans:
    """Records spans in one attempt of a work request's trace: the parent
    and what every span says of the request are found once for all of the
    attempt's spans (its assignment makes three, its completion one)."""

    def __init__(
        self, spans: ChildSpans, parent: SpanContext, task_name: str, attempt: int
    ) -> None:
        self._spans = spans
        self._parent = parent
        self._context: Context | None = None
        self._request: Attributes = {"taskyard.task": task_name, "taskyard.attempt": attempt}

    @property
    def context(self) -> Context:
        """The request's trace as a context, its submit span current (made
        when first asked for: only metrics ask)."""
        if self._context is None:
            self._context = trace.set_span_in_context(NonRecordingSpan(self._parent))
        return self._context

    def record(
        self,
        name: str,
        attributes: Attributes | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """A span from `start` (default: now) to `end` (default: now). The
        trace (whose submit span names the request) identifies the request;
        each span adds its task and attempt, and what varies."""
        self._spans.record(
            name,
            {**self._request, **attributes} if attributes else dict(self._request),
            _nanos(start) if start else None,
            _nanos(end) if end else None,
        )


def spans_of(work_request: WorkRequest) -> RequestSpans | None:
    """What records spans of `work_request`'s current attempt, or None when
    none would be kept: nothing records spans, or the sampler is sure to drop
    them (an unsampled request's are dropped before their attributes are even
    gathered)."""
    spans = recorder()
    if spans is None:
        return None
    carrier = work_request.trace_context
    return _attempt_spans(
        spans,
        carrier.get("traceparent", ""),
        carrier.get("tracestate", ""),
        work_request.task_name,
        work_request.attempt,
    )


@functools.lru_cache(maxsize=4096)
def _attempt_spans(
    spans: SpanRecorder, traceparent: str, tracestate: str, task_name: str, attempt: int
) -> RequestSpans | None:
    """Made once for an attempt's assignment and completion (they hold
    nothing that changes; the least recently used go first)."""
    parent = _parsed(traceparent, tracestate)
    if spans.drops_child_of(parent):
        return None
    return RequestSpans(spans.under(parent), parent, task_name, attempt)


def context_of(work_request: WorkRequest) -> Context:
    """What a measurement of `work_request` is made in: its trace, with its
    submit span current, so that a metric's exemplar names the request's
    trace rather than whichever RPC is running (a worker's long session);
    with no span at all when the request's spans are not kept."""
    spans = spans_of(work_request)
    return _NO_TRACE if spans is None else spans.context


def span(name: str, attributes: Attributes) -> AbstractContextManager[trace.Span]:
    """A span made current for a block (as the SDK's `use_span`: an exception
    that escapes is recorded on it), when anything records spans."""
    spans = recorder()
    if spans is None:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return spans.current(name, attributes)


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def record(name: str, work_request: WorkRequest, attributes: Attributes) -> None:
    """A span, ending now, in the work request's trace."""
    spans = spans_of(work_request)
    if spans is not None:
        spans.record(name, attributes)


def stored_context(submit: trace.Span) -> dict[str, str]:
    """What to store with a work request submitted in the span `submit`: its
    W3C trace context (empty when nothing records spans)."""
    context = submit.get_span_context()
    return w3c_carrier(context) if context.is_valid else {}


def _parsed(traceparent: str, tracestate: str) -> SpanContext:
    """A stored trace context: the parent of spans in the request's trace."""
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return span_context_from(carrier)
