"""The work-request state machine: every transition, allowed or refused."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import product

import pytest

from taskyard.scheduler.domain import (
    TRANSITIONS,
    IllegalTransitionError,
    State,
    WorkRequest,
    check_transition,
)

ALLOWED = {
    (State.PENDING, State.ASSIGNED),
    (State.PENDING, State.ABORTED),
    (State.PENDING, State.COMPLETED),
    (State.ASSIGNED, State.RUNNING),
    (State.ASSIGNED, State.COMPLETED),
    (State.ASSIGNED, State.PENDING),
    (State.ASSIGNED, State.ABORTED),
    (State.RUNNING, State.COMPLETED),
    (State.RUNNING, State.PENDING),
    (State.RUNNING, State.ABORTED),
    (State.COMPLETED, State.PENDING),
    (State.ABORTED, State.PENDING),
    (State.BLOCKED, State.PENDING),
    (State.BLOCKED, State.ABORTED),
    (State.BLOCKED, State.COMPLETED),
    (State.ABORTED, State.BLOCKED),
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_table_is_exactly_the_documented_one() -> None:
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert table == ALLOWED


@pytest.mark.parametrize(("source", "target"), sorted(product(State, State)))
def test_every_transition_is_allowed_or_refused(source: State, target: State) -> None:
    work_request = WorkRequest("wr", "noop", "{}", 0, NOW, "wr", state=source)
    if (source, target) in ALLOWED:
        check_transition(source, target)
        assert work_request.moved_to(target, NOW).state is target
    else:
        with pytest.raises(IllegalTransitionError) as caught:
            work_request.moved_to(target, NOW)
        assert caught.value.reason == "ILLEGAL_TRANSITION"
        assert caught.value.metadata == {"from": source.value, "to": target.value}


def test_a_move_copies_the_request_and_leaves_the_original_alone() -> None:
    now = datetime.now(UTC)
    pending = WorkRequest("wr1", "noop", "{}", 0, now, "wr1", trace_context={"a": "b"})
    assigned = pending.moved_to(State.ASSIGNED, now, worker_name="w1", assigned_at=now)
    assert (assigned.state, assigned.worker_name, assigned.updated_at) == (
        State.ASSIGNED,
        "w1",
        now,
    )
    assert (pending.state, pending.worker_name, pending.updated_at) == (State.PENDING, "", None)
    assert assigned.trace_context == pending.trace_context
    with pytest.raises(TypeError, match="no_such_field"):
        pending.with_changes(no_such_field=1)
