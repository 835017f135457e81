"""What each page shows, gathered from the service layer (never the store).

Each loader returns the context of its page's template: plain values, so
that a template only lays them out.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskyard import limits
from taskyard.errors import invalid
from taskyard.scheduler.domain import (
    ACTIVE_STATES,
    FINAL_STATES,
    Attempt,
    Result,
    State,
    WorkRequest,
)
from taskyard.scheduler.service.auth import Principal, tenant_of
from taskyard.scheduler.service.scheduler import Scheduler
from taskyard.scheduler.store.port import WorkRequestFilter
from taskyard.scheduler.web.pipeline import picture
from taskyard.scheduler.web.render import state_label

PAGE_SIZE = 50
#: How many of the newest requests the overview's timings are taken from.
RECENT = 200
STATES = tuple(State)
#: The longest value a filter takes (names and owners are shorter still).
MAX_FILTER = 200

Context = dict[str, Any]


@dataclass(frozen=True)
class Timing:
    """Median, 95th percentile and longest of some durations, in seconds."""

    count: int
    median: float
    p95: float
    longest: float


def timing(seconds: list[float]) -> Timing | None:
    """The timing of `seconds`, or None if there are none."""
    if not seconds:
        return None
    p95 = seconds[0]
    if len(seconds) > 1:
        p95 = statistics.quantiles(seconds, n=20, method="inclusive")[-1]
    return Timing(len(seconds), statistics.median(seconds), p95, max(seconds))


def queue_wait(work_request: WorkRequest) -> float | None:
    """Seconds from submit to the start of its attempt (to now, if pending)."""
    began = work_request.started_at or work_request.assigned_at
    if began is None:
        return None
    return (began - work_request.created_at).total_seconds()


def run_time(work_request: WorkRequest, now: datetime) -> float | None:
    """Seconds its attempt has run (so far, if it is running)."""
    if work_request.started_at is None:
        return None
    end = work_request.completed_at or (now if work_request.state is State.RUNNING else None)
    return None if end is None else (end - work_request.started_at).total_seconds()


async def overview(scheduler: Scheduler, viewer: Principal) -> Context:
    """Requests (those the viewer sees) by state and task, timings of recent
    ones, and the fleet."""
    counts = await scheduler.work_requests.counts(viewer)
    recent, _ = await scheduler.work_requests.list(viewer, WorkRequestFilter(), RECENT, "")
    now = scheduler.core.clock()
    tasks = sorted({task for _, task in counts})
    waits = [w for w in map(queue_wait, recent) if w is not None]
    runs = [r for r in (run_time(w, now) for w in recent if w.state in FINAL_STATES) if r]
    return {
        "tasks": tasks,
        "counts": {(state.value, task): n for (state, task), n in counts.items()},
        "totals": {s.value: sum(n for (st, _), n in counts.items() if st is s) for s in STATES},
        "wait": timing(waits),
        "run": timing(runs),
        "recent": recent[:10],
        "tenants": [
            u for u in scheduler.core.dispatcher.usage() if tenant_of(viewer) in (None, u.name)
        ],
        "fleet": scheduler.workers.counts(),
        "now": now,
    }


def checked(name: str, value: str, longest: int) -> str:
    """`value`, if it is short and holds no NUL (which no name or id holds,
    and PostgreSQL refuses); INVALID_ARGUMENT otherwise."""
    if len(value) > longest or "\x00" in value:
        raise invalid(name, f"must be at most {longest} characters, with no NUL")
    return value


def request_filter(query: Mapping[str, str]) -> tuple[WorkRequestFilter, str]:
    """The filter and page token a list's query asks for; INVALID_ARGUMENT
    (one line on the page) for a state that does not exist."""
    for key in ("state", "task", "worker", "owner", "before"):
        checked(key, query.get(key, ""), MAX_FILTER)
    state = query.get("state", "")
    if state and state not in {s.value for s in STATES}:
        raise invalid("state", f"must be one of {', '.join(s.value for s in STATES)}")
    where = WorkRequestFilter(
        states=frozenset({State(state)}) if state else frozenset(),
        task_name=query.get("task", ""),
        worker_name=query.get("worker", ""),
        owner=query.get("owner", ""),
    )
    return where, query.get("before", "")


async def requests(scheduler: Scheduler, viewer: Principal, query: Mapping[str, str]) -> Context:
    """One page of the requests the viewer sees, newest first, as filtered."""
    where, before = request_filter(query)
    page, next_token = await scheduler.work_requests.list(viewer, where, PAGE_SIZE, before)
    filters = {k: query[k] for k in ("state", "task", "worker", "owner") if query.get(k)}
    return {
        "requests": page,
        "next": next_token,
        "newest_first_page": not before,
        "filters": filters,
        "states": [s.value for s in STATES],
        "now": scheduler.core.clock(),
    }


async def request(scheduler: Scheduler, caller: Principal, work_request_id: str) -> Context:
    """One request: its history, attempts, artifacts and, pending, why."""
    checked("id", work_request_id, limits.MAX_ID)
    work_request = await scheduler.work_requests.get(caller, work_request_id)
    attempts = await scheduler.work_requests.attempts(caller, work_request_id)
    artifacts, _ = await scheduler.artifacts.page(caller, work_request_id, "", 100, "")
    explanation = None
    if work_request.state in (State.PENDING, State.BLOCKED):
        _, explanation = await scheduler.work_requests.explain(caller, work_request_id)
    after, dependents = await scheduler.work_requests.links(caller, work_request_id)
    return {
        "in_pipeline": bool(after or dependents),
        "wr": work_request,
        "attempts": attempts,
        "history": history(work_request, attempts),
        "artifacts": artifacts,
        "explanation": explanation,
        "trace_id": trace_id_of(work_request),
        "failed": work_request.result in {Result.FAILURE, Result.ERROR},
        "now": scheduler.core.clock(),
    }


async def pipeline(scheduler: Scheduler, caller: Principal, work_request_id: str) -> Context:
    """The pipeline a request is part of, drawn."""
    checked("id", work_request_id, limits.MAX_ID)
    found = await scheduler.work_requests.pipeline(caller, work_request_id)
    return {"id": work_request_id, "pipeline": found, "picture": picture(found)}


@dataclass(frozen=True)
class Step:
    """One line of a request's history."""

    at: datetime
    attempt: int
    what: str
    worker: str = ""


def history(work_request: WorkRequest, attempts: Sequence[Attempt]) -> list[Step]:
    """What happened to a request, oldest first: its submission, each ended
    attempt, then its current attempt as the request itself records it."""
    steps = [Step(work_request.created_at, 0, "submitted")]
    for attempt in attempts:
        steps.extend(_attempt_steps(attempt.attempt, attempt.worker_name,
                                    attempt.assigned_at, attempt.started_at))  # fmt: skip
        ended = f"{attempt.outcome.value}{': ' + attempt.result.value if attempt.result else ''}"
        if attempt.outcome is State.PENDING:
            ended = f"back in the queue ({attempt.reason or 'requeued'})"
        steps.append(Step(attempt.ended_at, attempt.attempt, ended, attempt.worker_name))
    current = work_request
    recorded = (
        bool(attempts)
        and attempts[-1].attempt == current.attempt
        and (attempts[-1].outcome is current.state)
    )
    if current.state in ACTIVE_STATES:
        steps.extend(_attempt_steps(current.attempt, current.worker_name,
                                    current.assigned_at, current.started_at))  # fmt: skip
    if current.abort_requested_at is not None and current.state in ACTIVE_STATES:
        steps.append(Step(current.abort_requested_at, current.attempt, "abort asked"))
    if current.state in FINAL_STATES and not recorded:
        ended_at = current.completed_at or current.updated_at or current.created_at
        steps.append(Step(ended_at, current.attempt, state_label(current), current.worker_name))
    return sorted(steps, key=lambda step: step.at)


def _attempt_steps(
    number: int, worker: str, assigned_at: datetime | None, started_at: datetime | None
) -> list[Step]:
    steps = [] if assigned_at is None else [Step(assigned_at, number, "assigned", worker)]
    if started_at is not None:
        steps.append(Step(started_at, number, "running", worker))
    return steps


def trace_id_of(work_request: WorkRequest) -> str:
    """The trace id in the request's stored W3C trace context, if any."""
    parts = work_request.trace_context.get("traceparent", "").split("-")
    if len(parts) != 4 or not re.fullmatch(r"[0-9a-f]{32}", parts[1]):
        return ""
    return parts[1]


async def workers(scheduler: Scheduler) -> Context:
    """Every known worker: metadata, overrides, task lists, slots, work, last heard."""
    return {
        "workers": scheduler.workers.list(),
        "fleet": scheduler.workers.counts(),
        "now": scheduler.core.clock(),
    }
