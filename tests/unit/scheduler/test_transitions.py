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
    (State.ASSIGNED, State.RUNNING),
    (State.ASSIGNED, State.COMPLETED),
    (State.ASSIGNED, State.PENDING),
    (State.ASSIGNED, State.ABORTED),
    (State.RUNNING, State.COMPLETED),
    (State.RUNNING, State.PENDING),
    (State.RUNNING, State.ABORTED),
    (State.COMPLETED, State.PENDING),
    (State.ABORTED, State.PENDING),
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
