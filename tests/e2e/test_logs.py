"""A task's output, live and after, through real processes: exit codes in the
record, followers that see lines as they are written, and nothing lost or
repeated when the scheduler restarts mid-output."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import TASKYARD, free_port, scheduler, taskyard, worker

pytestmark = pytest.mark.e2e
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "5", "--auto-enable-workers")
SH = {"TASKYARD_ALLOWED_COMMANDS": "sh"}


def lines_of(process: subprocess.Popen[bytes], timeout: float = 60) -> Iterator[str]:
    """Each line the process prints on stdout, as it arrives."""
    assert process.stdout is not None
    buffer, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line.decode()


def test_a_follower_sees_each_line_as_it_is_written_and_the_exit_code(tmp_path: Path) -> None:
    # The task writes "two" only once the test, having seen "one" through the
    # follower, says so (a file in the task's working directory): the
    # follower got "one" live, whatever the machine's load.
    script = "echo one; while [ ! -e go ]; do sleep 0.05; done; echo two; exit 3"
    with scheduler(tmp_path / "s", *FAST) as process:
        env = process.env()
        with worker(process.address, tmp_path / "w", env=SH):
            submitted = taskyard(
                ["submit", "command", "--data", json.dumps({"command": ["sh", "-c", script]})], env
            )
            work_request_id = submitted.stdout.strip()
            go = tmp_path / "w" / "scratch" / "work" / f"{work_request_id}.1" / "go"
            follower = subprocess.Popen(
                [*TASKYARD, "logs", work_request_id, "--follow"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            seen = []
            try:
                for line in lines_of(follower):
                    seen.append(line)
                    if line == "one":
                        go.touch()
                code = follower.wait(30)
            finally:
                if follower.poll() is None:
                    follower.kill()
                    follower.wait()
                assert follower.stdout is not None
                follower.stdout.close()
            assert seen == ["one", "two"]
            assert code == 3
            got = json.loads(taskyard(["get", work_request_id, "--json"], env).stdout)
            assert got["details"] == {"exit_code": 3}
            assert (got["result"], got["error"]["reason"]) == ("failure", "exit-code")
            waited = taskyard(
                ["submit", "command", "--wait", "--follow", "--data",
                 json.dumps({"command": ["sh", "-c", "echo one; echo two; exit 3"]})],
                env,
            )  # fmt: skip
            assert (waited.returncode, waited.stdout) == (3, "one\ntwo\n")


def test_a_scheduler_restart_mid_output_loses_and_repeats_nothing(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    script = "i=1; while [ $i -le 60 ]; do echo line $i; i=$((i+1)); sleep 0.1; done"
    expected = "".join(f"line {i}\n" for i in range(1, 61))
    with scheduler(tmp_path / "s", *FAST, listen=listen) as first:
        env = first.env()
        client = Client(first)
        try:
            with worker(listen, tmp_path / "w", env=SH):
                work_request_id = client.submit("command", {"command": ["sh", "-c", script]})
                follower = subprocess.Popen(
                    [*TASKYARD, "logs", work_request_id, "--follow"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                client.wait(work_request_id, {pb.WORK_REQUEST_STATE_RUNNING})
                time.sleep(2.0)
                os.kill(first.process.pid, signal.SIGKILL)
                first.process.wait()
                time.sleep(1.0)
                with scheduler(tmp_path / "s", *FAST, listen=listen) as again:
                    client.close()
                    client = Client(again)
                    output, _ = follower.communicate(timeout=90)
                    done = client.wait(work_request_id, timeout=60)
                    stored = taskyard(["logs", work_request_id], again.env())
                    artifacts = taskyard(
                        ["artifacts", "download", _debug_logs(client, work_request_id),
                         "-o", str(tmp_path / "out")],
                        again.env(),
                    )  # fmt: skip
        finally:
            client.close()
    assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS
    assert output.decode() == expected  # the follower: no gap, no repeat
    assert stored.stdout == expected  # the stored log
    assert artifacts.returncode == 0, artifacts.stderr
    assert (tmp_path / "out" / "stdout.txt").read_text() == expected  # the same bytes


def _debug_logs(client: Client, work_request_id: str) -> str:
    got = client.work_requests.Get(
        pb.GetRequest(id=work_request_id), metadata=client.metadata, timeout=10
    )
    [artifact] = [a for a in got.artifacts if a.category == "taskyard:work-request-debug-logs"]
    return artifact.id
