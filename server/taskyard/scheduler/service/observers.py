"""What watches the dispatcher and the submit use case without being part of
them: tracing and metrics are observers (the way Temporal's SDK adds tracing
through interceptors), so the scheduling logic reads without them.

The dispatcher calls each hook after the event it names has been committed;
a hook must not fail and must not block. Every hook does nothing here:
an observer overrides those it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple

from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.service.submission import Submitted


class Decision(NamedTuple):
    """What one matching decision weighed: how many candidates (pending
    shapes for a free slot, or workers for a new request) and how many of the
    verdicts it asked for came from the cache. (A tuple: one is made for
    every assignment, observed or not.)"""

    candidates: int
    cache_hits: int


class SubmitWatch:
    """One submission, as an observer follows it."""

    def trace_context(self) -> dict[str, str]:
        """The W3C trace context to store with the request (none by default)."""
        return {}

    def stored(self, submitted: Submitted, refusals: Callable[[], dict[str, int]]) -> None:
        """The submission is committed; `refusals` counts, if asked, why no
        worker took it at once (by reason)."""


NOT_WATCHED = SubmitWatch()


class Observer:
    """Hooks on the scheduler's use cases; each does nothing unless overridden."""

    @contextmanager
    def submitting(self, task_name: str) -> Iterator[SubmitWatch]:
        """Around one submission, from its validation to its commit."""
        yield NOT_WATCHED

    def transitioned(self, before: WorkRequest, after: WorkRequest) -> None:
        """A committed change of state."""

    def assigned(
        self,
        assigned: WorkRequest,
        worker: str,
        queued_since: datetime,
        decision: Decision,
        pending: int,
    ) -> None:
        """A committed assignment, and the matching decision that made it."""

    def completed(self, finished: WorkRequest, outcome: lifecycle.Outcome) -> None:
        """A worker's report of how an attempt ended, recorded."""

    def declined(self, work_request: WorkRequest, worker: str, reason: str) -> None:
        """A worker gave an assignment back, unstarted."""

    def lease_expired(self, work_request: WorkRequest, worker: str) -> None:
        """A lost worker's lease expired; the request was requeued or failed."""
