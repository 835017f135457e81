"""A work request's trace, as an observer of the scheduler's use cases.

Every work request is one trace: the submit span (a child of the client's
span when it sent a `traceparent`) is stored with the request as W3C trace
context, so the spans of its queue wait, matching, assignment and completion
join that trace later, after a restart too, for every attempt. Spans are made
through the OpenTelemetry API only; a span whose start and end are known
afterwards is started with `start_time` and ended with `end_time`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import State, WorkRequest
from taskyard.scheduler.service.observers import Decision, Observer, SubmitWatch
from taskyard.scheduler.service.submission import Submitted

SCOPE = "taskyard.scheduler"
Attributes = dict[str, AttributeValue]
#: Stored trace context is W3C's, whatever OTEL_PROPAGATORS says for RPCs.
_W3C = TraceContextTextMapPropagator()


@functools.lru_cache(maxsize=4096)
def parent_of(traceparent: str, tracestate: str) -> Context:
    """The context of a stored submit span: the parent of the request's spans."""
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _W3C.extract(carrier)


def context_of(work_request: WorkRequest) -> Context:
    """The request's trace, its submit span current (for a metric's exemplar)."""
    carrier = work_request.trace_context
    return parent_of(carrier.get("traceparent", ""), carrier.get("tracestate", ""))


def _nanos(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1e9)


class _SubmitSpan(SubmitWatch):
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def trace_context(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, trace.set_span_in_context(self._span))
        return carrier

    def stored(self, submitted: Submitted, refusals: Callable[[], dict[str, int]]) -> None:
        span = self._span
        span.set_attribute("taskyard.work_request.id", submitted.work_request.id)
        span.set_attribute("taskyard.created", submitted.created)
        if span.is_recording() and submitted.work_request.state is State.PENDING:
            span.set_attributes({f"taskyard.workers.{r}": n for r, n in refusals().items()})


class SpanObserver(Observer):
    """Records the spans of each work request's trace with `tracer`."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    @contextmanager
    def submitting(self, task_name: str) -> Iterator[SubmitWatch]:
        attributes = {"taskyard.task": task_name}
        with self._tracer.start_as_current_span("taskyard.submit", attributes=attributes) as span:
            yield _SubmitSpan(span)

    def _record(
        self,
        name: str,
        work_request: WorkRequest,
        attributes: Attributes,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """A span in the request's trace, from `start` to `end` (default: now)."""
        request: Attributes = {
            "taskyard.task": work_request.task_name,
            "taskyard.attempt": work_request.attempt,
        }
        span = self._tracer.start_span(
            name,
            context=context_of(work_request),
            attributes={**request, **attributes},
            start_time=_nanos(start),
        )
        span.end(end_time=_nanos(end))

    def assigned(
        self,
        assigned: WorkRequest,
        worker: str,
        queued_since: datetime,
        decision: Decision,
        pending: int,
    ) -> None:
        self._record("taskyard.queue_wait", assigned, {}, queued_since, assigned.assigned_at)
        match: Attributes = {
            "taskyard.worker": worker,
            "taskyard.candidates": decision.candidates,
            "taskyard.cache_hits": decision.cache_hits,
            "taskyard.pending": pending,
        }
        self._record("taskyard.match", assigned, match)
        self._record("taskyard.assign", assigned, {"taskyard.worker": worker})

    def completed(self, finished: WorkRequest, outcome: lifecycle.Outcome) -> None:
        attributes: Attributes = {
            "taskyard.outcome": outcome.value,
            "taskyard.state": finished.state.value,
        }
        if finished.result.value:
            attributes["taskyard.result"] = finished.result.value
        self._record("taskyard.complete", finished, attributes)

    def declined(self, work_request: WorkRequest, worker: str, reason: str) -> None:
        attributes: Attributes = {"taskyard.worker": worker, "taskyard.reason": reason}
        self._record("taskyard.declined", work_request, attributes)

    def lease_expired(self, work_request: WorkRequest, worker: str) -> None:
        self._record("taskyard.lease_expired", work_request, {"taskyard.worker": worker})
