"""The session's wire form: what is ready goes together; reports fold."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from taskyard.scheduler import lifecycle
from taskyard.scheduler.api.convert import session_responses
from taskyard.scheduler.api.workers import UNKNOWN_REPORT, fold_reports
from taskyard.scheduler.domain import Lease, WorkRequest
from taskyard.scheduler.service import messages
from taskyard.scheduler.service.live import Session
from taskyard.v1 import common_pb2, workers_pb2

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def assign(name: str) -> messages.Assign:
    pending = WorkRequest(name, "noop", "{}", 0, NOW, name)
    return messages.Assign(lifecycle.assign(pending, "w1", NOW), 1, None)


def ack(name: str) -> messages.Ack:
    return messages.Ack(Lease(name, 1), messages.ReportKind.COMPLETED)


def test_runs_of_assignments_and_of_acks_each_become_one_message() -> None:
    abort = messages.AbortWork(Lease("x", 1), messages.AbortReason.USER, "stop")
    ready: list[messages.SessionMessage] = [
        assign("a"),
        assign("b"),
        ack("p"),
        ack("q"),
        abort,
        assign("c"),
    ]
    wire = list(session_responses(ready))
    assert [m.WhichOneof("message") for m in wire] == [
        "assignments",
        "acks",
        "abort",
        "assignments",
    ]
    assert [a.lease.work_request_id for a in wire[0].assignments.assignments] == ["a", "b"]
    assert [a.lease.work_request_id for a in wire[1].acks.acks] == ["p", "q"]
    assert wire[3].assignments.assignments[0].lease.work_request_id == "c"


async def test_a_session_hands_over_everything_queued_then_ends() -> None:
    session = Session("w1", lambda _: None, silence=60)
    session.send(assign("a"))
    session.send(ack("p"))
    session.close(messages.Closing("bye", 1.0))
    session.send(assign("late"))  # dropped: the session is closed
    ready = await asyncio.wait_for(session.ready(), 1)
    assert ready is not None
    assert [type(m) for m in ready] == [messages.Assign, messages.Ack, messages.Closing]
    assert await asyncio.wait_for(session.ready(), 1) is None


def started(name: str) -> workers_pb2.WorkReport:
    return workers_pb2.WorkReport(started=workers_pb2.WorkStarted(lease=proto_lease(name)))


def completed(name: str) -> workers_pb2.WorkReport:
    report = workers_pb2.WorkCompleted(
        lease=proto_lease(name), outcome=workers_pb2.WORK_OUTCOME_SUCCESS
    )
    return workers_pb2.WorkReport(completed=report)


def proto_lease(name: str) -> common_pb2.Lease:
    return common_pb2.Lease(work_request_id=name, attempt=1)


def test_a_start_followed_by_its_completion_folds_into_one_step() -> None:
    steps = fold_reports([started("a"), started("b"), completed("b"), completed("c"), started("d")])
    assert [(lease.work_request_id, start, done is not None) for lease, start, done in steps] == [
        ("a", True, False),
        ("b", True, True),
        ("c", False, True),
        ("d", True, False),
    ]


def test_a_completion_of_another_attempt_does_not_fold() -> None:
    other = workers_pb2.WorkReport(
        completed=workers_pb2.WorkCompleted(
            lease=common_pb2.Lease(work_request_id="a", attempt=2),
            outcome=workers_pb2.WORK_OUTCOME_SUCCESS,
        )
    )
    steps = fold_reports([started("a"), other])
    assert [(lease.attempt, start) for lease, start, _ in steps] == [(1, True), (2, False)]


def test_a_decline_is_a_step_of_its_own() -> None:
    declined = workers_pb2.WorkReport(
        declined=workers_pb2.WorkDeclined(
            lease=common_pb2.Lease(work_request_id="b", attempt=1), reason="stopping"
        )
    )
    steps = fold_reports([declined, started("a"), completed("a")])
    assert [(lease.work_request_id, start, type(report)) for lease, start, report in steps] == [
        ("b", False, workers_pb2.WorkDeclined),
        ("a", True, workers_pb2.WorkCompleted),
    ]


def test_a_report_of_no_known_kind_becomes_a_step_to_refuse() -> None:
    [(lease, started, report)] = fold_reports([workers_pb2.WorkReport()])
    assert (lease.work_request_id, started, report) == ("", False, UNKNOWN_REPORT)
