"""Application spans of the scheduler, each a child of the work request's trace.

The submit span's context is stored with the work request, so spans made
later, after a restart, or for another attempt, still join that one trace.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from taskyard.scheduler.domain import WorkRequest
from taskyard.telemetry import context_from

tracer = trace.get_tracer("taskyard.scheduler")


def active() -> bool:
    """Whether anything records spans: a tracer provider is installed (only
    when traces are exported). Without one, the API's no-op spans still cost
    tens of microseconds each, on every request."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(name: str, **attributes: Any) -> AbstractContextManager[trace.Span]:
    """A span made current for the block, when anything records spans."""
    if not active():
        return nullcontext(trace.INVALID_SPAN)
    return tracer.start_as_current_span(name, attributes=attributes)


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
    parent: Context | None = None,
    **extra: Any,
) -> None:
    """A span in the work request's trace, from `start` (default: now) to `end`.

    Pass `parent` (from `parent_of`) when recording several spans at once, to
    parse the stored trace context only once.
    """
    if not active():
        return
    span = tracer.start_span(
        name,
        context=parent if parent is not None else parent_of(work_request),
        attributes=attributes_of(work_request, **extra),
        start_time=_nanos(start) if start else None,
    )
    span.end(end_time=_nanos(end) if end else None)


def parent_of(work_request: WorkRequest) -> Context:
    """The context to record spans of this work request's trace in."""
    return context_from(work_request.trace_context)
