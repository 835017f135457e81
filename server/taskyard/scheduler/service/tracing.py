"""Application spans of the scheduler, each a child of the work request's trace.

The submit span's context is stored with the work request, so spans made
later, after a restart, or for another attempt, still join that one trace.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from taskyard.scheduler.domain import WorkRequest
from taskyard.span_recorder import RecordingTracerProvider, SpanRecorder
from taskyard.telemetry import context_from

SCOPE = "taskyard.scheduler"


def recorder() -> SpanRecorder | None:
    """What records the scheduler's spans: only when traces are exported.

    Without it nothing is made, not even the API's no-op spans, which still
    cost tens of microseconds each, on every request.
    """
    provider = trace.get_tracer_provider()
    if isinstance(provider, RecordingTracerProvider):
        return provider.recorder(SCOPE)
    return None


class RequestSpans:
    """Records spans in one work request's trace: the recorder and parent
    context are found once for several spans (an assignment makes three)."""

    def __init__(self, spans: SpanRecorder, parent: Context, work_request: WorkRequest) -> None:
        self._spans = spans
        self._parent = parent
        self._work_request = work_request

    def record(
        self, name: str, start: datetime | None = None, end: datetime | None = None, **extra: Any
    ) -> None:
        """A span from `start` (default: now) to `end` (default: now)."""
        self._spans.record(
            name,
            attributes_of(self._work_request, **extra),
            self._parent,
            _nanos(start) if start else None,
            _nanos(end) if end else None,
        )


def spans_of(work_request: WorkRequest) -> RequestSpans | None:
    """What records spans of `work_request`, or None when none would be kept:
    nothing records spans, or the sampler is sure to drop them (an unsampled
    request's are dropped before their attributes are even gathered)."""
    spans = recorder()
    if spans is None:
        return None
    parent = parent_of(work_request)
    return None if spans.drops_child_of(parent) else RequestSpans(spans, parent, work_request)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span made current for the block, when anything records spans."""
    spans = recorder()
    if spans is None:
        yield trace.INVALID_SPAN
        return
    with trace.use_span(spans.start(name, attributes), end_on_exit=True) as current:
        yield current


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def attributes_of(work_request: WorkRequest, **extra: Any) -> dict[str, Any]:
    """The attributes of a span about a work request. The trace (whose submit
    span names the request) identifies it; each span adds only what varies."""
    return {
        "taskyard.task": work_request.task_name,
        "taskyard.attempt": work_request.attempt,
        **{f"taskyard.{key}": value for key, value in extra.items() if value is not None},
    }


def record(
    name: str,
    work_request: WorkRequest,
    start: datetime | None = None,
    end: datetime | None = None,
    **extra: Any,
) -> None:
    """A span in the work request's trace, from `start` (default: now) to `end`."""
    spans = spans_of(work_request)
    if spans is not None:
        spans.record(name, start, end, **extra)


def parent_of(work_request: WorkRequest) -> Context:
    """The context to record spans of this work request's trace in."""
    return _parsed(tuple(work_request.trace_context.items()))


@functools.lru_cache(maxsize=4096)
def _parsed(carrier: tuple[tuple[str, str], ...]) -> Context:
    """A stored trace context, parsed once for the several spans of an attempt
    (contexts are immutable)."""
    return context_from(dict(carrier))
