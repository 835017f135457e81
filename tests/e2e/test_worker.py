"""Real scheduler and worker processes, end to end."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from taskyard.worker.processes import group_members
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, free_port, scheduler, stop, worker

pytestmark = pytest.mark.e2e
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "2", "--auto-enable-workers")
WORKER_ENV = {"TASKYARD_ABORT_GRACE": "2"}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SchedulerProcess, Client]]:
    with scheduler(tmp_path / "scheduler", *FAST) as process:
        client = Client(process)
        try:
            yield process, client
        finally:
            client.close()


def marked_processes(marker: str) -> list[int]:
    """Pids whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_results_success_failure_error_and_configure_failure(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    with worker(process.address, tmp_path / "w", "--slots", "2", env={"SAMPLE_STRICT": "1"}):
        ok = client.submit("noop")
        failed = client.submit("noop", {"result": False})
        raised = client.submit("raiser")
        refused = client.submit("strict")  # valid for the scheduler, not for the worker
        unknown_program = client.submit("command", {"command": ["true"]})
        assert client.wait(ok).result == pb.WORK_REQUEST_RESULT_SUCCESS
        assert client.wait(failed).result == pb.WORK_REQUEST_RESULT_FAILURE
        error = client.wait(raised)
        assert (error.result, error.error.reason, error.error.type) == (
            pb.WORK_REQUEST_RESULT_ERROR,
            "task-raised",
            "RuntimeError",
        )
        assert "raised on purpose" in error.error.message
        strict = client.wait(refused)
        assert (strict.result, strict.error.reason) == (
            pb.WORK_REQUEST_RESULT_ERROR,
            "configure-failed",
        )
        # `true` is not allowed on this worker: it is never assigned there.
        explained = client.explain(unknown_program)
        assert explained.workers[0].eligibility == pb.ELIGIBILITY_CANNOT_RUN


def test_abort_of_a_command_whose_child_ignores_sigterm(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    marker = f"{time.time_ns() % 10**6}.5"
    with worker(process.address, tmp_path / "w", "--allow-command", "sh", env=WORKER_ENV):
        work_request_id = client.submit(
            "command", {"command": ["sh", "-c", f"trap '' TERM; sleep {marker}; :"]}
        )
        client.wait(work_request_id, {pb.WORK_REQUEST_STATE_RUNNING})
        deadline = time.monotonic() + 10
        while not marked_processes(f"sleep {marker}") and time.monotonic() < deadline:
            time.sleep(0.1)
        marked = marked_processes(f"sleep {marker}")  # the shell and its sleep
        [group] = {os.getpgid(pid) for pid in marked}
        scratch = tmp_path / "w" / "scratch"
        assert list(scratch.rglob("taskyard-command-*"))  # the executor's TMPDIR is used
        client.abort(work_request_id)
        assert client.wait(work_request_id, timeout=30).state == pb.WORK_REQUEST_STATE_ABORTED
        deadline = time.monotonic() + 15
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(group) == []
        assert marked_processes(f"sleep {marker}") == []
        # The killed executor's temporary files went with it.
        assert not list((tmp_path / "w" / "scratch").rglob("taskyard-command-*"))


def test_execution_timeout(running: tuple[SchedulerProcess, Client], tmp_path: Path) -> None:
    process, client = running
    with worker(process.address, tmp_path / "w", env=WORKER_ENV):
        request = pb.SubmitRequest(task_name="noop", task_data_json='{"sleep": 60}')
        request.timeout.FromMilliseconds(500)
        submitted = client.work_requests.Submit(request, metadata=client.metadata)
        done = client.wait(submitted.work_request.id, timeout=30)
        assert (done.result, done.error.reason) == (pb.WORK_REQUEST_RESULT_ERROR, "timeout")
        again = client.submit("noop")  # the slot is usable again
        assert client.wait(again).result == pb.WORK_REQUEST_RESULT_SUCCESS


def test_a_killed_worker_s_work_is_requeued_and_done_once_elsewhere(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    with worker(process.address, tmp_path / "first", "--name", "first") as first:
        client.wait_connected(1)
        work_request_id = client.submit("noop", {"sleep": 3})
        client.wait(work_request_id, {pb.WORK_REQUEST_STATE_RUNNING})
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        with worker(process.address, tmp_path / "second", "--name", "second"):
            done = client.wait(work_request_id, timeout=60)
    assert (done.result, done.worker_name, done.attempt) == (
        pb.WORK_REQUEST_RESULT_SUCCESS,
        "second",
        2,
    )


def test_results_made_while_the_scheduler_is_away_are_delivered(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    data = tmp_path / "scheduler"
    with scheduler(data, *FAST, "--lease-grace", "30", listen=listen) as first:
        client = Client(first)
        with worker(first.address, tmp_path / "w", env=WORKER_ENV) as the_worker:
            work_request_id = client.submit("noop", {"sleep": 2})
            client.wait(work_request_id, {pb.WORK_REQUEST_STATE_RUNNING})
            os.killpg(first.process.pid, signal.SIGKILL)  # the scheduler dies mid-task
            first.process.wait()
            time.sleep(3)  # the task finishes while nobody listens
            client.close()
            with scheduler(data, *FAST, "--lease-grace", "30", listen=listen) as second:
                client = Client(second)
                done = client.wait(work_request_id, timeout=60)
                assert (done.result, done.attempt) == (pb.WORK_REQUEST_RESULT_SUCCESS, 1)
                client.close()
            assert the_worker.process.poll() is None
    assert not list((tmp_path / "w" / "results").glob("*.json"))


def test_a_version_mismatch_is_never_assigned_and_explained(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    with worker(process.address, tmp_path / "w", env={"SAMPLE_DRIFTING_VERSION": "2"}):
        client.wait_connected(1)
        work_request_id = client.submit("drifting")
        time.sleep(1)
        assert client.get(work_request_id).state == pb.WORK_REQUEST_STATE_PENDING
        [verdict] = client.explain(work_request_id).workers
        assert verdict.eligibility == pb.ELIGIBILITY_VERSION_MISMATCH
        assert verdict.detail == "scheduler has drifting version 1, worker has 2"


def test_a_disabled_worker_gets_nothing_until_enabled(tmp_path: Path) -> None:
    with scheduler(tmp_path / "scheduler", "--heartbeat-interval", "0.5") as process:
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", "--name", "gated") as gated:
                work_request_id = client.submit("noop")
                deadline = time.monotonic() + 20
                while "taskyard workers enable gated" not in gated.log.read_text():
                    assert time.monotonic() < deadline, gated.log.read_text()
                    time.sleep(0.2)
                assert client.get(work_request_id).state == pb.WORK_REQUEST_STATE_PENDING
                client.enable("gated")
                assert client.wait(work_request_id).result == pb.WORK_REQUEST_RESULT_SUCCESS
                assert gated.log.read_text().count("is disabled") == 1
        finally:
            client.close()


def test_sigterm_lets_running_work_finish(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    with worker(process.address, tmp_path / "w") as the_worker:
        work_request_id = client.submit("noop", {"sleep": 1.5})
        client.wait(work_request_id, {pb.WORK_REQUEST_STATE_RUNNING})
        assert stop(the_worker.process) == 0
    assert client.get(work_request_id).result == pb.WORK_REQUEST_RESULT_SUCCESS


def test_a_stopping_worker_takes_no_new_work_and_costs_it_no_attempt(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    with worker(process.address, tmp_path / "w", "--slots", "2") as the_worker:
        first = client.submit("noop", {"sleep": 2})
        client.wait(first, {pb.WORK_REQUEST_STATE_RUNNING})
        the_worker.process.send_signal(signal.SIGTERM)
        later = client.submit("noop")  # while it stops: it has a free slot
        assert the_worker.process.wait(30) == 0
    assert client.get(first).result == pb.WORK_REQUEST_RESULT_SUCCESS
    waiting = client.get(later)
    assert (waiting.state, waiting.attempt) == (pb.WORK_REQUEST_STATE_PENDING, 1)
    with worker(process.address, tmp_path / "w2"):
        done = client.wait(later)
    assert (done.result, done.attempt) == (pb.WORK_REQUEST_RESULT_SUCCESS, 1)
