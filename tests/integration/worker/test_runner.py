"""The task runner with real executor processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from taskyard.worker.pipe import Job
from taskyard.worker.runner import TaskRunner


def job(task: str, data: str = "{}", work_request_id: str = "wr1", attempt: int = 1) -> Job:
    return Job(
        work_request_id=work_request_id, attempt=attempt, task_name=task, task_data_json=data
    )


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_text():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
async def runner() -> AsyncIterator[TaskRunner]:
    runner = TaskRunner(slots=2, abort_grace=30.0)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def test_jobs_report_how_they_ended(runner: TaskRunner) -> None:
    assert (await runner.run(job("noop"))).outcome == "success"
    assert (await runner.run(job("noop", '{"result": false}'))).outcome == "failure"
    unknown = await runner.run(job("nope"))
    assert (unknown.outcome, unknown.error and unknown.error["reason"]) == ("error", "unknown-task")
    bad = await runner.run(job("noop", '{"sleep": -1}'))
    assert (bad.outcome, bad.error and bad.error["reason"]) == ("error", "configure-failed")


async def test_the_executor_is_reused(runner: TaskRunner) -> None:
    pids = set()
    for _ in range(3):
        await runner.run(job("noop"))
        pids |= {slot.executor.pid for slot in runner._slots}
    assert len(pids) == 2


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.02)


async def test_abort_reaches_the_task_itself(runner: TaskRunner) -> None:
    executors = {slot.executor.pid for slot in runner._slots}
    running = asyncio.create_task(runner.run(job("noop", '{"sleep": 600}')))
    await until(lambda: bool(runner.running()))
    await runner.abort("wr1", 1)
    assert (await running).outcome == "aborted"
    # noop stopped on task.abort(): no process had to be stopped or replaced.
    assert {slot.executor.pid for slot in runner._slots} == executors


async def test_two_slots_run_at_once(runner: TaskRunner) -> None:
    first = asyncio.create_task(runner.run(job("noop", '{"sleep": 600}', "a")))
    second = asyncio.create_task(runner.run(job("noop", '{"sleep": 600}', "b")))
    await until(lambda: len(runner.running()) == 2)
    assert len(runner.running()) == runner.slot_count
    await asyncio.gather(runner.abort("a", 1), runner.abort("b", 1))
    assert [(await first).outcome, (await second).outcome] == ["aborted", "aborted"]


async def test_a_program_the_worker_does_not_allow_is_refused_even_if_assigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKYARD_ALLOWED_COMMANDS", "echo")  # inherited by the executor
    runner = TaskRunner(slots=1)
    await runner.start()
    try:
        report = await runner.run(job("command", '{"command": ["true"]}'))
    finally:
        await runner.stop()
    assert report.outcome == "error"
    assert report.error is not None
    assert report.error["reason"] == "command-not-allowed"
    assert "'true'" in report.error["message"]


async def test_a_late_abort_spares_the_next_attempt(runner: TaskRunner) -> None:
    running = asyncio.create_task(runner.run(job("noop", '{"sleep": 600}', attempt=2)))
    await until(lambda: bool(runner.running()))
    await runner.abort("wr1", 1)  # the previous attempt's abort, arriving late
    assert runner.holds("wr1", 2)
    assert not running.done()
    await runner.abort("wr1", 2)
    assert (await running).outcome == "aborted"


@pytest.mark.parametrize("grace", [1.0, 3.0])
async def test_the_abort_grace_bounds_children_that_ignore_sigterm(
    monkeypatch: pytest.MonkeyPatch, grace: float
) -> None:
    monkeypatch.setenv("TASKYARD_ALLOWED_COMMANDS", "sh")
    marker = f"61.{int(grace * 10)}7"
    script = (
        f"trap '' TERM; (trap '' TERM; sleep {marker}; :) & "
        f"(trap '' TERM; (sleep {marker}; :) & wait) & sleep {marker}; wait"
    )
    runner = TaskRunner(slots=1, abort_grace=grace)
    await runner.start()
    try:
        running = asyncio.create_task(
            runner.run(job("command", json.dumps({"command": ["sh", "-c", script]})))
        )
        await until(lambda: len(processes_with(marker)) >= 3)
        await runner.abort("wr1", 1)
        report = await running
        await until(lambda: not processes_with(marker))  # SIGKILLed ones take a moment to go
    finally:
        await runner.stop()
    assert report.outcome == "aborted"
