"""What the status page makes of a request: its history, timings and the
way values are laid out. Pure code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskyard.errors import InvalidArgumentError
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import Attempt, Result, State, WorkError, WorkRequest
from taskyard.scheduler.web import render, views

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def submitted() -> WorkRequest:
    return WorkRequest("wr1", "noop", "{}", 0, T0, "wr1")


def test_history_tells_each_attempt_then_the_current_one() -> None:
    first = lifecycle.start(lifecycle.assign(submitted(), "w1", at(1)), at(2))
    lost = lifecycle.requeue_or_fail(first, at(5), "worker-lost", "worker w1 was lost")
    ended = Attempt.ended(first, lost, WorkError("worker-lost", "worker w1 was lost"))
    second = lifecycle.start(lifecycle.assign(lost, "w2", at(6)), at(7))
    steps = views.history(second, [ended])
    assert [(s.at, s.attempt, s.what, s.worker) for s in steps] == [
        (T0, 0, "submitted", ""),
        (at(1), 1, "assigned", "w1"),
        (at(2), 1, "running", "w1"),
        (at(5), 1, "back in the queue (worker-lost)", "w1"),
        (at(6), 2, "assigned", "w2"),
        (at(7), 2, "running", "w2"),
    ]
    done = lifecycle.complete(second, Result.FAILURE, at(9))
    finished = views.history(done, [ended, Attempt.ended(second, done, None)])
    assert [s.what for s in finished][-1] == "completed: failure"
    assert len(finished) == 7  # the last attempt is told once, not again from the request


def test_a_pending_request_aborted_ends_its_history_without_an_attempt() -> None:
    aborted = lifecycle.abort(submitted(), at(3), "not needed")
    assert [s.what for s in views.history(aborted, [])] == ["submitted", "aborted"]


def test_timings_use_the_start_and_a_running_one_runs_until_now() -> None:
    running = lifecycle.start(lifecycle.assign(submitted(), "w1", at(1)), at(2))
    assert views.queue_wait(running) == 2.0
    assert views.run_time(running, at(12)) == 10.0
    assert views.queue_wait(submitted()) is None
    timing = views.timing([1.0, 2.0, 3.0, 100.0])
    assert timing is not None
    assert (timing.count, timing.median, timing.longest) == (4, 2.5, 100.0)
    assert timing.p95 <= timing.longest
    assert views.timing([]) is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"state": "lost"}, "must be one of"),
        ({"task": "x" * 201}, "at most 200"),
        ({"owner": "a\x00b"}, "NUL"),
    ],
)
def test_a_filter_that_makes_no_sense_is_one_clear_error(
    query: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        views.request_filter(query)


def test_a_filter_becomes_the_stores_filter() -> None:
    where, before = views.request_filter({"state": "running", "worker": "w1", "before": "x"})
    assert where.states == frozenset({State.RUNNING})
    assert (where.worker_name, before) == ("w1", "x")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "\u2013"),
        (0.25, "0.25 s"),
        (12.04, "12.0 s"),
        (184, "3 min 04 s"),
        (7500, "2 h 05 min"),
    ],
)
def test_durations_read_well(seconds: float | None, shown: str) -> None:
    assert render.duration(seconds) == shown


def test_templates_escape_what_users_sent() -> None:
    template = render.environment().from_string("{{ value }}")
    assert template.render(value="<script>alert(1)</script>") == (
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    )
