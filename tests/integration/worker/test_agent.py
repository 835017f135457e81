"""The worker agent against an in-process scheduler (`FakeScheduler`): the
messages it sends and how it answers what is pushed, with real executors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskyard.v1 import common_pb2, workers_pb2
from taskyard.worker.agent import Agent
from taskyard.worker.config import WorkerConfig
from taskyard.worker.outbox import Outbox
from taskyard.worker.runner import TaskRunner
from taskyard.worker.testing import FakeScheduler


@dataclass
class Running:
    agent: Agent
    scheduler: FakeScheduler
    stop: asyncio.Event


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.setenv("TASKYARD_ALLOWED_COMMANDS", "sh")
    async with agent_running(tmp_path, prefetch=0) as started:
        yield started


@pytest.fixture
async def prefetching(tmp_path: Path) -> AsyncIterator[Running]:
    """Two slots and one assignment held beyond them."""
    async with agent_running(tmp_path, prefetch=1) as started:
        yield started


@asynccontextmanager
async def agent_running(tmp_path: Path, prefetch: int) -> AsyncIterator[Running]:
    config = WorkerConfig(
        name="w1", data_dir=tmp_path, slots=2, prefetch=prefetch, drain_timeout=30
    )
    runner = TaskRunner(2, abort_grace=2.0, scratch=tmp_path / "scratch")
    scheduler = FakeScheduler()
    agent = Agent(config, scheduler, runner, Outbox(tmp_path / "results"))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(scheduler.connected(), 30)
        yield Running(agent, scheduler, stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def assign(scheduler: FakeScheduler, request: str, task: str, data: Any = None) -> common_pb2.Lease:
    lease = common_pb2.Lease(work_request_id=request, attempt=1)
    assignment = workers_pb2.Assignment(
        lease=lease, task_name=task, task_data_json=json.dumps(data or {})
    )
    scheduler.push(assignments=workers_pb2.Assignments(assignments=[assignment]))
    return lease


def abort(scheduler: FakeScheduler, lease: common_pb2.Lease, why: str) -> None:
    scheduler.push(abort=workers_pb2.AbortWork(lease=lease, message=why))


async def completion(scheduler: FakeScheduler) -> workers_pb2.WorkCompleted:
    """The next completed report (starts come first, or in the same message)."""
    async with asyncio.timeout(60):
        while True:
            reports: workers_pb2.WorkReports = await scheduler.next("reports")
            for report in reports.reports:
                if report.WhichOneof("report") == "completed":
                    return report.completed


async def test_it_says_hello_runs_what_it_is_given_and_reports_it(running: Running) -> None:
    scheduler = running.scheduler
    hello = await scheduler.next("hello")
    metadata = json.loads(hello.metadata_json)
    assert (hello.slots, metadata["noop:version"], metadata["system:slots"]) == (2, 1, 2)
    assert "sandbox:isolation" in metadata
    assert scheduler.registered == ["w1"]
    lease = assign(scheduler, "r1", "noop")
    done = await completion(scheduler)
    assert (done.lease, done.outcome) == (lease, workers_pb2.WORK_OUTCOME_SUCCESS)


async def test_a_result_is_kept_until_acknowledged_and_sent_again_after_a_reconnect(
    running: Running,
) -> None:
    scheduler = running.scheduler
    await scheduler.next("hello")
    lease = assign(scheduler, "r1", "noop", {"result": False})
    first = await completion(scheduler)
    assert first.outcome == workers_pb2.WORK_OUTCOME_FAILURE
    assert running.agent.outbox.pending()  # on disk until the scheduler says it has it
    scheduler.end_session()  # the scheduler goes before acknowledging it
    hello = await scheduler.next("hello")
    assert scheduler.sessions == 2
    assert list(hello.running) == [lease]  # it says what it still holds
    again = await completion(scheduler)
    assert (again.lease, again.outcome) == (lease, workers_pb2.WORK_OUTCOME_FAILURE)
    ack = workers_pb2.ReportAck(lease=lease, kind=workers_pb2.REPORT_KIND_COMPLETED)
    scheduler.push(acks=workers_pb2.ReportAcks(acks=[ack]))
    async with asyncio.timeout(30):
        while running.agent.outbox.pending():
            await asyncio.sleep(0.01)


async def test_an_abort_stops_the_task_and_is_reported(running: Running) -> None:
    scheduler = running.scheduler
    await scheduler.next("hello")
    lease = assign(scheduler, "r1", "noop", {"sleep": 600})
    async with asyncio.timeout(30):  # its start is reported once it runs
        while not running.agent.runner.holds("r1", 1):
            await asyncio.sleep(0.01)
    abort(scheduler, lease, "no longer wanted")
    done = await completion(scheduler)
    assert (done.lease, done.outcome) == (lease, workers_pb2.WORK_OUTCOME_ABORTED)


async def test_uploads_go_through_the_port_for_the_lease_of_their_work(running: Running) -> None:
    scheduler = running.scheduler
    await scheduler.next("hello")
    data = {"command": ["sh", "-c", "echo made > out.txt"], "outputs": ["out.txt"]}
    lease = assign(scheduler, "r1", "command", data)
    done = await completion(scheduler)
    assert done.outcome == workers_pb2.WORK_OUTCOME_SUCCESS
    [output] = [u for u in scheduler.uploads if u.category == "taskyard:command-output"]
    assert (output.lease, output.contents) == (lease, {"out.txt": b"made\n"})


async def test_inputs_come_through_the_port_into_the_tasks_directory(running: Running) -> None:
    scheduler = running.scheduler
    await scheduler.next("hello")
    scheduler.artifacts["a1"] = {"notes.txt": b"from an input\n"}
    data = {"command": ["sh", "-c", "cat inputs/notes.txt"], "inputs": [{"artifact": "a1"}]}
    assign(scheduler, "r1", "command", data)
    done = await completion(scheduler)
    assert done.outcome == workers_pb2.WORK_OUTCOME_SUCCESS
    [logs] = [u for u in scheduler.uploads if u.category == "taskyard:work-request-debug-logs"]
    assert logs.contents["stdout.txt"] == b"from an input\n"


async def test_while_it_stops_it_gives_back_what_it_is_given(running: Running) -> None:
    scheduler = running.scheduler
    await scheduler.next("hello")
    running.agent.draining = True
    lease = assign(scheduler, "r1", "noop")
    reports = await scheduler.next("reports")
    [declined] = [r.declined for r in reports.reports if r.WhichOneof("report") == "declined"]
    assert (declined.lease, declined.reason) == (lease, "the worker is stopping")


async def test_assignments_past_its_slots_in_one_message_are_given_back(running: Running) -> None:
    scheduler = running.scheduler
    await scheduler.next("hello")
    leases = [common_pb2.Lease(work_request_id=f"r{n}", attempt=1) for n in range(3)]
    scheduler.push(
        assignments=workers_pb2.Assignments(
            assignments=[
                workers_pb2.Assignment(lease=lease, task_name="noop", task_data_json="{}")
                for lease in leases
            ]
        )
    )
    declined: list[workers_pb2.WorkDeclined] = []
    ended: list[workers_pb2.WorkCompleted] = []
    async with asyncio.timeout(60):
        while len(ended) < 2 or not declined:
            reports: workers_pb2.WorkReports = await scheduler.next("reports")
            for report in reports.reports:
                kind = report.WhichOneof("report")
                if kind == "declined":
                    declined.append(report.declined)
                elif kind == "completed":
                    ended.append(report.completed)
    assert [(d.lease, d.reason) for d in declined] == [(leases[2], "no free slot")]  # 2 slots
    assert sorted(c.lease.work_request_id for c in ended) == ["r0", "r1"]
    assert all(c.outcome == workers_pb2.WORK_OUTCOME_SUCCESS for c in ended)


async def running_both(running: Running) -> tuple[common_pb2.Lease, common_pb2.Lease]:
    """Two long tasks, one in each slot, running."""
    leases = [assign(running.scheduler, f"r{n}", "noop", {"sleep": 600}) for n in range(2)]
    async with asyncio.timeout(30):
        while not all(running.agent.runner.holds(f"r{n}", 1) for n in range(2)):
            await asyncio.sleep(0.01)
    return leases[0], leases[1]


async def test_a_prefetched_assignment_starts_when_a_slot_frees(prefetching: Running) -> None:
    scheduler = prefetching.scheduler
    hello = await scheduler.next("hello")
    assert hello.prefetch == 1
    first, second = await running_both(prefetching)
    assign(scheduler, "r2", "noop")  # held, not started: both slots are taken
    abort(scheduler, first, "make room")
    ended = [await completion(scheduler), await completion(scheduler)]
    assert [(c.lease.work_request_id, c.outcome) for c in ended] == [
        ("r0", workers_pb2.WORK_OUTCOME_ABORTED),
        ("r2", workers_pb2.WORK_OUTCOME_SUCCESS),  # it ran in the slot r0 freed
    ]
    abort(scheduler, second, "done")
    await completion(scheduler)


async def test_an_abort_of_a_prefetched_assignment_ends_it_at_once(prefetching: Running) -> None:
    scheduler = prefetching.scheduler
    await scheduler.next("hello")
    first, second = await running_both(prefetching)
    queued = assign(scheduler, "r2", "noop")
    abort(scheduler, queued, "no longer wanted")
    done = await completion(scheduler)  # before either slot frees
    assert (done.lease, done.outcome) == (queued, workers_pb2.WORK_OUTCOME_ABORTED)
    assert prefetching.agent.runner.holds("r0", 1)
    assert prefetching.agent.runner.holds("r1", 1)
    for lease in (first, second):
        abort(scheduler, lease, "done")
        await completion(scheduler)


async def test_stopping_gives_back_what_waits_for_a_slot(prefetching: Running) -> None:
    scheduler = prefetching.scheduler
    await scheduler.next("hello")
    first, second = await running_both(prefetching)
    queued = assign(scheduler, "r2", "noop")
    async with asyncio.timeout(30):
        while not prefetching.agent.holds_queued("r2", 1):
            await asyncio.sleep(0.01)
    prefetching.stop.set()
    declined = None
    async with asyncio.timeout(30):
        while declined is None:
            reports: workers_pb2.WorkReports = await scheduler.next("reports")
            found = [r.declined for r in reports.reports if r.WhichOneof("report") == "declined"]
            declined = found[0] if found else None
    assert (declined.lease, declined.reason) == (queued, "the worker is stopping")
    for lease in (first, second):  # let the drain end
        abort(scheduler, lease, "done")
