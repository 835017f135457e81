"""Tasks as a hostile submitter writes them, against a real scheduler and a
worker with its default settings (the sandbox): each attack fails or has no
effect, and the worker carries on.

Needs bubblewrap where user namespaces are allowed: skipped without it
locally, required in CI (TASKYARD_REQUIRE_SANDBOX=1, set by .ci/run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, scheduler, taskyard, worker
from tests.e2e.sandbox import require_sandbox
from tests.e2e.test_worker import marked_processes

pytestmark = [pytest.mark.e2e, require_sandbox()]
SECRET = "never-seen-by-a-task-7f3a"
PROGRAMS = ("sh", "python3", "ln", "setsid", "cat")


@dataclass
class Farm:
    scheduler: SchedulerProcess
    client: Client
    worker_dir: Path
    worker_pid: int

    def run(self, data: dict[str, object], timeout: float = 60) -> pb.WorkRequest:
        """Submit a command and wait for its end."""
        done: pb.WorkRequest = self.client.wait(
            self.client.submit("command", data), timeout=timeout
        )
        return done

    def output(self, work_request_id: str) -> str:
        """Everything the task printed, from its log."""
        found = taskyard(["logs", work_request_id], self.scheduler.env())
        return found.stdout + found.stderr

    def carries_on(self) -> None:
        """The worker is alive and still runs work."""
        assert os.waitpid(self.worker_pid, os.WNOHANG) == (0, 0)
        done = self.client.wait(self.client.submit("noop"))
        assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    root = tmp_path_factory.mktemp("hostile")
    with scheduler(root / "scheduler", "--auto-enable-workers") as process:
        client = Client(process)
        allowed = [flag for program in PROGRAMS for flag in ("--allow-command", program)]
        worker_env = {"CLOUD_SECRET_KEY": SECRET, "TASKYARD_ABORT_GRACE": "1"}
        with worker(
            process.address, root / "worker", "--slots", "2", *allowed, env=worker_env
        ) as running:
            try:
                client.wait_connected(1)
                yield Farm(process, client, root / "worker", running.process.pid)
            finally:
                client.close()


def test_the_workers_token_cannot_be_read(farm: Farm) -> None:
    token = (farm.worker_dir / "worker.token").read_text().strip()
    done = farm.run({"command": ["cat", f"{farm.worker_dir}/worker.token"]})
    assert done.result == pb.WORK_REQUEST_RESULT_FAILURE
    assert "No such file or directory" in farm.output(done.id)
    everything = "grep -rs . / --exclude-dir=proc | head -c 50000000"
    looked = farm.run({"command": ["sh", "-c", everything]})
    assert token not in farm.output(looked.id)
    farm.carries_on()


def test_nor_through_a_symlinked_output(farm: Farm) -> None:
    token = str(farm.worker_dir / "worker.token")
    done = farm.run({"command": ["ln", "-s", token, "out.txt"], "outputs": ["out.txt"]})
    assert (done.result, done.error.reason) == (pb.WORK_REQUEST_RESULT_FAILURE, "unsafe-output")
    assert "out.txt" in done.error.message
    listed = taskyard(["artifacts", "list", "--work-request", done.id], farm.scheduler.env())
    assert "command-output" not in listed.stdout
    farm.carries_on()


def test_the_workers_environment_is_not_a_tasks(farm: Farm) -> None:
    done = farm.run({"command": ["sh", "-c", "env; cat /proc/*/environ"]})
    printed = farm.output(done.id)
    assert "PATH=" in printed
    assert SECRET not in printed
    farm.carries_on()


def test_the_worker_cannot_be_stopped_or_signalled(farm: Farm) -> None:
    pid = farm.worker_pid
    attack = f"kill -KILL {pid}; kill -TERM {pid}; kill -KILL -1; kill -STOP {pid}; ps ax"
    farm.run({"command": ["sh", "-c", attack]})
    farm.carries_on()


def test_another_running_tasks_files_are_out_of_reach(farm: Farm) -> None:
    keeper = farm.client.submit(
        "command", {"command": ["sh", "-c", "echo secret-of-a > mine.txt; sleep 60"]}
    )
    farm.client.wait(keeper, {pb.WORK_REQUEST_STATE_RUNNING})
    its_dir = farm.worker_dir / "scratch" / "work" / f"{keeper}.1"
    deadline = time.monotonic() + 20
    while not (its_dir / "mine.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (its_dir / "mine.txt").read_text() == "secret-of-a\n"  # it is there, on the host
    looking = f"cat {its_dir}/mine.txt /tmp/*/mine.txt; grep -rs secret-of-a / --exclude-dir=proc"
    done = farm.run({"command": ["sh", "-c", looking]})
    assert "secret-of-a" not in farm.output(done.id)
    farm.client.abort(keeper)
    farm.client.wait(keeper)
    farm.carries_on()


def test_the_schedulers_port_cannot_be_reached(farm: Farm) -> None:
    host, port = farm.scheduler.address.rsplit(":", 1)
    connect = f"import socket; socket.create_connection(({host!r}, {port}), timeout=5)"
    done = farm.run({"command": ["python3", "-c", connect]})
    assert done.result == pb.WORK_REQUEST_RESULT_FAILURE
    printed = farm.output(done.id)
    assert "ConnectionRefusedError" in printed or "unreachable" in printed
    farm.carries_on()


def test_the_kernels_settings_cannot_be_changed(farm: Farm) -> None:
    done = farm.run({"command": ["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"]})
    assert done.result == pb.WORK_REQUEST_RESULT_FAILURE
    assert "Read-only file system" in farm.output(done.id)
    farm.carries_on()


def test_memory_past_the_limit_is_killed_and_said(farm: Farm) -> None:
    hog = "x = bytearray(512 * 1024 * 1024); print('allocated')"
    done = farm.run({"command": ["python3", "-c", hog], "limits": {"memory_mb": 64}})
    assert (done.result, done.error.reason) == (pb.WORK_REQUEST_RESULT_FAILURE, "memory-limit")
    assert "64 MB" in done.error.message
    assert "allocated" not in farm.output(done.id)
    farm.carries_on()


def test_forking_past_the_limit_is_stopped_and_said(farm: Farm) -> None:
    bomb = "for i in $(seq 200); do sleep 60 & done; wait"
    done = farm.run({"command": ["sh", "-c", bomb], "limits": {"processes": 20}})
    assert (done.result, done.error.reason) == (pb.WORK_REQUEST_RESULT_FAILURE, "process-limit")
    assert "20 processes" in done.error.message
    farm.carries_on()


def test_a_setsid_child_does_not_outlive_an_abort(farm: Farm) -> None:
    marker = f"{time.time_ns() % 10**9}.25"
    script = f"setsid sh -c 'sleep {marker}' & sleep 600"
    request = farm.client.submit("command", {"command": ["sh", "-c", script]})
    farm.client.wait(request, {pb.WORK_REQUEST_STATE_RUNNING})
    deadline = time.monotonic() + 20
    while not marked_processes(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes(f"sleep {marker}"), "the detached child never started"
    farm.client.abort(request)
    assert farm.client.wait(request).state == pb.WORK_REQUEST_STATE_ABORTED
    deadline = time.monotonic() + 10
    while marked_processes(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes(f"sleep {marker}") == []
    farm.carries_on()
