"""Taskyard from another language: a TypeScript client and worker (Node.js,
stubs generated from protos/ by Buf's protoc-gen-es, Connect for gRPC)
against a real scheduler. `make test` runs them where Node.js is installed
and says so where it is not; in CI they must run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, scheduler, worker

pytestmark = pytest.mark.e2e
NODE = Path(__file__).with_name("node")
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "5", "--auto-enable-workers")


def _npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args], cwd=NODE, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def node_project() -> Path:
    """The Node project, installed from its lock file, its stubs generated."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        message = "Node.js is not installed: the polyglot tests did not run"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if not (NODE / "node_modules").exists():
        installed = _npm("ci", "--no-audit", "--no-fund")
        assert installed.returncode == 0, installed.stderr[-3000:]
    generated = _npm("run", "generate")
    assert generated.returncode == 0, generated.stderr[-3000:]
    return NODE


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npx", "tsx", script, *args],
        cwd=NODE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[SchedulerProcess]:
    with scheduler(tmp_path / "scheduler", *FAST) as process:
        yield process


def test_a_node_client_runs_the_whole_cycle(
    node_project: Path, running: SchedulerProcess, tmp_path: Path
) -> None:
    token = (running.data_dir / "admin.token").read_text().strip()
    env = {"TASKYARD_ALLOWED_COMMANDS": "sh"}
    with worker(running.address, tmp_path / "w", env=env):
        Client(running).wait_connected(1)
        result = _run("src/client.ts", running.address, token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "node client: every step passed" in result.stdout


def test_a_node_worker_takes_reports_and_uploads(
    node_project: Path, running: SchedulerProcess
) -> None:
    client = Client(running)
    try:
        work_request_id = client.submit("noop")
        result = _run("src/worker.ts", running.address)
        assert result.returncode == 0, result.stdout + result.stderr
        done = client.wait(work_request_id, timeout=30)
        assert (done.result, done.worker_name) == (pb.WORK_REQUEST_RESULT_SUCCESS, "node-worker")
        assert done.details_json == '{"node": true}'
        got = client.work_requests.Get(
            pb.GetRequest(id=work_request_id), metadata=client.metadata, timeout=10
        )
        assert [a.category for a in got.artifacts] == ["polyglot:node-worker"]
    finally:
        client.close()
