"""Pipelines end to end, as a release engineer chaining builds would use
them: real scheduler and worker processes, driven through the CLI."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, free_port, scheduler, taskyard, worker

pytestmark = pytest.mark.e2e
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "2", "--auto-enable-workers")
COMMANDS = ("--allow-command", "sh", "--allow-command", "cat")


def cli(process: SchedulerProcess, *args: str) -> str:
    done = taskyard(args, process.env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def submitted(
    process: SchedulerProcess, path: Path, nodes: list[dict[str, object]]
) -> dict[str, str]:
    """Submit a pipeline file of `nodes`; their ids by name."""
    path.write_text(json.dumps({"nodes": nodes}))
    return {
        r["name"]: r["id"]
        for r in json.loads(cli(process, "pipeline", "submit", str(path), "--json"))
    }


def sh(script: str, **extra: object) -> dict[str, object]:
    return {"command": ["sh", "-c", script], **extra}


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[SchedulerProcess, Client]]:
    with scheduler(tmp_path / "s", *FAST) as process:
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", "--slots", "4", *COMMANDS):
                client.wait_connected(1)
                yield process, client
        finally:
            client.close()


def test_a_fan_out_and_fan_in_pass_artifacts_down(
    farm: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = farm
    arches = ("amd64", "arm64", "riscv64")

    def build(arch: str) -> dict[str, object]:
        script = f"echo {arch}-$(cat inputs/version.txt) > {arch}.bin"
        data = sh(script, outputs=[f"{arch}.bin"], inputs=[{"request": "source"}])
        return {"name": f"build-{arch}", "task": "command", "after": ["source"], "data": data}

    nodes: list[dict[str, object]] = [
        {"name": "source", "task": "command",
         "data": sh("echo v1.2 > version.txt", outputs=["version.txt"])},
        *[build(a) for a in arches],
        {"name": "publish", "task": "command",
         "data": sh("cat inputs/*.bin | sort", inputs=[{"request": f"build-{a}"} for a in arches])},
    ]  # fmt: skip
    ids = submitted(process, tmp_path / "p.json", nodes)
    assert client.wait(ids["publish"]).result == pb.WORK_REQUEST_RESULT_SUCCESS
    published = taskyard(["logs", ids["publish"]], process.env())
    assert published.stdout.split() == [f"{a}-v1.2" for a in arches]
    shown = cli(process, "pipeline", "show", ids["source"])
    assert shown.splitlines()[0] == "pipeline of 5 requests: done, none failed"
    got = json.loads(cli(process, "get", ids["build-arm64"], "--json"))
    assert got["after"] == [{"on": ids["source"], "needs": "success"}]
    assert got["dependents"] == [ids["publish"]]


def test_a_failure_aborts_what_needs_it_and_a_step_after_its_end_runs(
    farm: tuple[SchedulerProcess, Client],
) -> None:
    process, client = farm
    # Nothing starts until `hold` (which no worker may run) is aborted.
    hold = cli(process, "submit", "command", "--data", '{"command": ["make"]}').strip()
    failing = json.dumps(sh("exit 3"))
    build = cli(process, "submit", "command", "--data", failing, "--after-done", hold).strip()
    test = cli(process, "submit", "noop", "--after", build).strip()
    publish = cli(process, "submit", "noop", "--after", test).strip()
    report = cli(process, "submit", "noop", "--after-done", build).strip()
    explained = cli(process, "explain", publish)
    assert f"waits for the success of {test}" in explained
    cli(process, "abort", hold)
    assert client.wait(report).result == pb.WORK_REQUEST_RESULT_SUCCESS
    for waiting in (test, publish):
        aborted = client.wait(waiting)
        assert (aborted.state, aborted.error.reason) == (
            pb.WORK_REQUEST_STATE_ABORTED,
            "dependency-failed",
        )
    assert build in client.get(test).error.message
    shown = cli(process, "pipeline", "show", report)
    assert shown.splitlines()[0] == "pipeline of 5 requests: done, 4 failed"


def test_retrying_a_middle_node_runs_it_and_what_is_below(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"  # b fails until it exists
    nodes: list[dict[str, object]] = [
        {"name": "a", "task": "noop"},
        {"name": "b", "task": "command", "after": ["a"], "data": sh(f"test -e {fixed}")},
        {"name": "c", "task": "noop", "after": ["b"]},
    ]
    with scheduler(tmp_path / "s", *FAST) as process:
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", "--executor", "process", *COMMANDS):
                ids = submitted(process, tmp_path / "p.json", nodes)
                assert client.wait(ids["c"]).error.reason == "dependency-failed"
                refused = taskyard(["retry", ids["c"]], process.env())
                assert refused.returncode == 1
                assert "waits for the success of" in refused.stderr
                fixed.touch()
                cli(process, "retry", ids["b"])
                assert client.wait(ids["c"]).result == pb.WORK_REQUEST_RESULT_SUCCESS
                assert [client.get(ids[n]).attempt for n in "abc"] == [1, 2, 1]
        finally:
            client.close()


def test_a_scheduler_killed_mid_pipeline_runs_every_node_once(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    ran = tmp_path / "ran"
    ran.mkdir()
    chain = [f"n{i}" for i in range(8)]
    nodes: list[dict[str, object]] = [
        {"name": name, "task": "command", "after": chain[i - 1 : i],
         "data": sh(f"sleep 0.3; echo {name} >> {ran}/log")}
        for i, name in enumerate(chain)
    ]  # fmt: skip
    with ExitStack() as running:
        current = running.enter_context(scheduler(tmp_path / "s", *FAST, listen=listen))
        running.enter_context(worker(listen, tmp_path / "w", "--executor", "process", *COMMANDS))
        ids = submitted(current, tmp_path / "p.json", nodes)
        for kill in range(3):  # each kill lands while some node runs
            client = Client(current)
            client.wait(ids[chain[2 * kill + 1]], {pb.WORK_REQUEST_STATE_RUNNING})
            client.close()
            os.kill(current.process.pid, signal.SIGKILL)
            current.process.wait()
            time.sleep(0.5)
            current = running.enter_context(scheduler(tmp_path / "s", *FAST, listen=listen))
        client = Client(current)
        running.callback(client.close)
        assert client.wait(ids[chain[-1]], timeout=60).result == pb.WORK_REQUEST_RESULT_SUCCESS
        for name in chain:
            assert client.get(ids[name]).result == pb.WORK_REQUEST_RESULT_SUCCESS
    assert (ran / "log").read_text().split() == chain  # each once, in order
