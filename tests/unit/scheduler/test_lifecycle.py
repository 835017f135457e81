"""What ends an attempt does to a work request."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import Result, State, WorkError, WorkRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def running(attempt: int = 1, max_attempts: int = 3) -> WorkRequest:
    pending = WorkRequest(
        "wr", "noop", "{}", 0, NOW, "k", attempt=attempt, max_attempts=max_attempts
    )
    return lifecycle.start(lifecycle.assign(pending, "w1", NOW), NOW)


@pytest.mark.parametrize(
    ("outcome", "result"),
    [
        (lifecycle.Outcome.SUCCESS, Result.SUCCESS),
        (lifecycle.Outcome.FAILURE, Result.FAILURE),
        (lifecycle.Outcome.ERROR, Result.ERROR),
    ],
)
def test_finish_records_the_result(outcome: lifecycle.Outcome, result: Result) -> None:
    ending = lifecycle.Ending(outcome, '{"n": 1}', details_json='{"exit_code": 0}')
    done = lifecycle.finish(running(), ending, NOW)
    assert (done.state, done.result, done.output_json) == (State.COMPLETED, result, '{"n": 1}')
    assert (done.completed_at, done.details_json) == (NOW, '{"exit_code": 0}')


def test_an_error_keeps_its_reason() -> None:
    error = WorkError("task-raised", "boom", "RuntimeError")
    done = lifecycle.finish(running(), lifecycle.Ending(lifecycle.Outcome.ERROR, error=error), NOW)
    assert done.error == error


def test_a_failure_keeps_its_reason() -> None:
    error = WorkError("exit-code", "sh exited with 3")
    ending = lifecycle.Ending(lifecycle.Outcome.FAILURE, error=error)
    assert lifecycle.finish(running(), ending, NOW).error == error


def test_a_lost_attempt_is_requeued_with_the_next_attempt_number() -> None:
    lost = lifecycle.requeue_or_fail(running(attempt=1), NOW, "worker-lost", "gone")
    assert (lost.state, lost.attempt, lost.worker_name) == (State.PENDING, 2, "")
    assert lost.assigned_at is None


def test_the_last_lost_attempt_completes_with_error_worker_lost() -> None:
    lost = lifecycle.requeue_or_fail(running(attempt=3), NOW, "worker-lost", "gone")
    assert (lost.state, lost.result) == (State.COMPLETED, Result.ERROR)
    assert lost.error is not None
    assert lost.error.reason == "worker-lost"


def test_a_requested_abort_wins_over_a_requeue() -> None:
    asked = dataclasses.replace(running(), abort_requested_at=NOW)
    assert lifecycle.requeue_or_fail(asked, NOW, "worker-lost", "gone").state is State.ABORTED
    assert (
        lifecycle.finish(asked, lifecycle.Ending(lifecycle.Outcome.ABORTED), NOW).state
        is State.ABORTED
    )


def test_an_unrequested_abort_by_the_worker_requeues() -> None:
    assert (
        lifecycle.finish(running(), lifecycle.Ending(lifecycle.Outcome.ABORTED), NOW).state
        is State.PENDING
    )


def test_retry_starts_a_fresh_attempt_at_the_back_of_the_queue() -> None:
    failed = lifecycle.finish(running(attempt=3), lifecycle.Ending(lifecycle.Outcome.FAILURE), NOW)
    again = lifecycle.retry(failed, NOW, "later", budget=3)
    assert (again.id, again.state, again.attempt, again.max_attempts) == ("wr", State.PENDING, 4, 6)
    assert (again.result, again.error, again.queue_key) == (Result.NONE, None, "later")
