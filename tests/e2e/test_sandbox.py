"""What a sandboxed task may ask for, end to end: the network on a worker
that allows it, limits within the worker's, and an environment (a tiny
busybox root filesystem, built here in a moment)."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, scheduler, taskyard, worker
from tests.e2e.sandbox import require_sandbox

pytestmark = [pytest.mark.e2e, require_sandbox()]
BUSYBOX = shutil.which("busybox")
APPLETS = ("sh", "cat", "ls", "echo", "id", "uname", "wc")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SchedulerProcess, Client]]:
    with scheduler(tmp_path / "scheduler", "--auto-enable-workers") as process:
        client = Client(process)
        try:
            yield process, client
        finally:
            client.close()


def busybox_root(tmp_path: Path) -> Path:
    """A root filesystem of one static busybox, as a gzipped tarball."""
    if BUSYBOX is None:
        if os.environ.get("TASKYARD_REQUIRE_SANDBOX"):
            raise AssertionError("TASKYARD_REQUIRE_SANDBOX is set, but there is no busybox")
        pytest.skip("no busybox here (apt-get install -y busybox-static)")
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "os-release").write_text('NAME="taskyard-tiny"\n')
    tarball = tmp_path / "rootfs.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname=".")
    return tarball


def uploaded(process: SchedulerProcess, path: Path) -> str:
    done = taskyard(["artifacts", "upload", "--category", "environment", str(path)], process.env())
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_a_task_runs_in_an_environment(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    environment = uploaded(process, busybox_root(tmp_path))
    script = "cat /etc/os-release; ls /; echo made > out.txt"
    data = {"command": ["sh", "-c", script], "environment": environment, "outputs": ["out.txt"]}
    with worker(process.address, tmp_path / "w", "--allow-command", "sh") as running_worker:
        first, second = client.submit("command", data), client.submit("command", data)
        for request in (first, second):
            done = client.wait(request)
            assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, done
        printed = taskyard(["logs", first], process.env()).stdout
        assert 'NAME="taskyard-tiny"' in printed
        assert "usr" not in printed.split()  # the environment's root, not the host's
        listed = taskyard(["artifacts", "list", "--work-request", first], process.env()).stdout
        assert "taskyard:command-output" in listed
    assert running_worker.log.read_text().count(f"environment {environment} unpacked") == 1


def test_an_environment_must_exist_and_be_a_root_filesystem(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    missing = taskyard(
        ["submit", "command", "--data", '{"command": ["sh"], "environment": "nope"}'],
        process.env(),
    )
    assert missing.returncode == 2
    assert "no artifact 'nope'" in missing.stderr
    (tmp_path / "notes.txt").write_text("not a tarball\n")
    bogus = uploaded(process, tmp_path / "notes.txt")
    with worker(process.address, tmp_path / "w", "--allow-command", "sh"):
        done = client.wait(client.submit("command", {"command": ["sh"], "environment": bogus}))
    assert (done.result, done.error.reason) == (
        pb.WORK_REQUEST_RESULT_ERROR,
        "environment-unavailable",
    )
    assert "not a usable root filesystem archive" in done.error.message


def test_the_network_only_where_allowed_and_asked_for(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    host, port = process.address.rsplit(":", 1)
    connect = f"import socket; socket.create_connection(({host!r}, {port}), timeout=5)"
    online = {"command": ["python3", "-c", connect], "network": True}
    with worker(process.address, tmp_path / "closed", "--allow-command", "python3"):
        client.wait_connected(1)
        waiting = client.submit("command", online)
        explained = client.explain(waiting)
        assert "--allow-network" in explained.workers[0].detail
        offline = client.wait(client.submit("command", {**online, "network": False}))
        assert offline.result == pb.WORK_REQUEST_RESULT_FAILURE
    with worker(
        process.address, tmp_path / "open", "--allow-command", "python3", "--allow-network"
    ):
        assert client.wait(waiting).result == pb.WORK_REQUEST_RESULT_SUCCESS


def test_limits_past_the_workers_wait_and_say_why(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    with worker(process.address, tmp_path / "w", "--task-memory-mb", "256"):
        client.wait_connected(1)
        greedy = client.submit("noop", {"limits": {"memory_mb": 1024}})
        explained = client.explain(greedy)
        assert "1024 MB of memory" in explained.workers[0].detail
        assert "at most 256" in explained.workers[0].detail
        modest = client.wait(client.submit("noop", {"limits": {"memory_mb": 128}}))
        assert modest.result == pb.WORK_REQUEST_RESULT_SUCCESS
