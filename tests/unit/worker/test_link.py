"""The worker's side of the session: reports ready together leave together."""

from __future__ import annotations

from taskyard.v1 import common_pb2, workers_pb2
from taskyard.worker.agent import Link, StartReport


def lease(name: str) -> common_pb2.Lease:
    return common_pb2.Lease(work_request_id=name, attempt=1)


async def test_reports_queued_together_go_in_one_message_in_order() -> None:
    link = Link(open=True)
    link.report(started=workers_pb2.WorkStarted(lease=lease("a")))
    link.send(heartbeat=workers_pb2.WorkerHeartbeat())
    link.report(completed=workers_pb2.WorkCompleted(lease=lease("a")))
    link.report(started=workers_pb2.WorkStarted(lease=lease("b")))
    link.close()
    sent = [message async for message in link.outgoing()]
    assert [m.WhichOneof("message") for m in sent] == ["reports", "heartbeat"]
    reports = sent[0].reports.reports
    assert [r.WhichOneof("report") for r in reports] == ["started", "completed", "started"]
    assert [r.started.lease.work_request_id or r.completed.lease.work_request_id
            for r in reports] == ["a", "a", "b"]  # fmt: skip


async def test_reports_after_a_send_start_a_new_message() -> None:
    link = Link(open=True)
    link.report(started=workers_pb2.WorkStarted(lease=lease("a")))
    outgoing = link.outgoing()
    first = await anext(outgoing)
    link.report(started=workers_pb2.WorkStarted(lease=lease("b")))
    second = await anext(outgoing)
    assert [len(m.reports.reports) for m in (first, second)] == [1, 1]


def test_a_closed_link_drops_reports() -> None:
    link = Link()
    link.report(started=workers_pb2.WorkStarted(lease=lease("a")))
    assert link.queue.empty()


async def test_a_quick_end_carries_its_start_in_one_message() -> None:
    link = Link(open=True)
    start = StartReport(link.report, lease("a"))
    start.now()  # the job ended before the start was due
    link.report(completed=workers_pb2.WorkCompleted(lease=lease("a")))
    start.now()  # once only
    link.close()
    sent = [message async for message in link.outgoing()]
    assert len(sent) == 1
    assert [r.WhichOneof("report") for r in sent[0].reports.reports] == ["started", "completed"]


async def test_a_longer_job_reports_its_start_when_due() -> None:
    link = Link(open=True)
    StartReport(link.report, lease("a"))
    outgoing = link.outgoing()
    first = await anext(outgoing)  # comes by itself, START_REPORT_DELAY later
    assert first.reports.reports[0].started.lease.work_request_id == "a"
