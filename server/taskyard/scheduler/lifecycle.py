"""What happens to a work request when its attempt ends. Pure functions."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from taskyard.scheduler.domain import Result, State, WorkError, WorkRequest


class Outcome(enum.StrEnum):
    """How an attempt ended on the worker."""

    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    ABORTED = "aborted"


def assign(work_request: WorkRequest, worker_name: str, now: datetime) -> WorkRequest:
    """The request claimed by `worker_name`."""
    return work_request.moved_to(State.ASSIGNED, now, worker_name=worker_name, assigned_at=now)


def start(work_request: WorkRequest, now: datetime) -> WorkRequest:
    """The request running on its worker."""
    return work_request.moved_to(State.RUNNING, now, started_at=now)


def decline(work_request: WorkRequest, now: datetime) -> WorkRequest:
    """An assignment its worker gave back unstarted: pending again, on the same
    attempt (it never ran) and in the same place in the queue."""
    return work_request.moved_to(State.PENDING, now, worker_name="", assigned_at=None)


def complete(
    work_request: WorkRequest,
    result: Result,
    now: datetime,
    *,
    output_json: str = "",
    error: WorkError | None = None,
    details_json: str = "",
) -> WorkRequest:
    """The request completed with `result`."""
    return work_request.moved_to(
        State.COMPLETED,
        now,
        result=result,
        output_json=output_json,
        error=error,
        completed_at=now,
        details_json=details_json,
    )


def abort(
    work_request: WorkRequest, now: datetime, message: str = "aborted by a user"
) -> WorkRequest:
    """The request aborted."""
    return work_request.moved_to(
        State.ABORTED, now, error=WorkError("aborted", message), completed_at=now
    )


def requeue_or_fail(
    work_request: WorkRequest, now: datetime, reason: str, message: str
) -> WorkRequest:
    """An attempt lost without a result: next attempt, or ERROR once attempts run out.

    A user's pending abort wins: the request ends ABORTED.
    """
    if work_request.abort_requested_at is not None:
        return abort(work_request, now)
    if work_request.attempt >= work_request.max_attempts:
        detail = f"{message} (attempt {work_request.attempt} of {work_request.max_attempts})"
        return complete(work_request, Result.ERROR, now, error=WorkError(reason, detail))
    return work_request.moved_to(
        State.PENDING,
        now,
        attempt=work_request.attempt + 1,
        worker_name="",
        assigned_at=None,
        started_at=None,
    )


@dataclass(frozen=True)
class Ending:
    """How a worker says an attempt ended."""

    outcome: Outcome
    output_json: str = ""
    error: WorkError | None = None
    #: What the task reported of it: a JSON object (`{"exit_code": 3}`).
    details_json: str = ""


def finish(work_request: WorkRequest, ending: Ending, now: datetime) -> WorkRequest:
    """The request after its worker reported how the attempt ended (a
    failure keeps its reason: `exit-code`, `signal`...)."""
    outcome, output_json, error = ending.outcome, ending.output_json, ending.error
    details_json = ending.details_json
    if outcome is Outcome.SUCCESS:
        return complete(
            work_request, Result.SUCCESS, now, output_json=output_json, details_json=details_json
        )
    if outcome is Outcome.FAILURE:
        return complete(
            work_request,
            Result.FAILURE,
            now,
            output_json=output_json,
            error=error,
            details_json=details_json,
        )
    if outcome is Outcome.ERROR:
        error = error or WorkError("task-error", "the task failed without saying why")
        return complete(
            work_request,
            Result.ERROR,
            now,
            output_json=output_json,
            error=error,
            details_json=details_json,
        )
    message = "the worker stopped the task before it finished"
    return requeue_or_fail(work_request, now, "worker-lost", message)


def retry(work_request: WorkRequest, now: datetime, queue_key: str, budget: int) -> WorkRequest:
    """A new attempt of a failed, errored or aborted request, at the back of the
    queue, with a fresh budget of `budget` attempts against lost workers."""
    attempt = work_request.attempt + 1
    return work_request.moved_to(
        State.PENDING,
        now,
        attempt=attempt,
        max_attempts=attempt + budget - 1,
        queue_key=queue_key,
        result=Result.NONE,
        output_json="",
        error=None,
        worker_name="",
        assigned_at=None,
        started_at=None,
        completed_at=None,
        abort_requested_at=None,
    )
