"""Real Taskyard processes for end-to-end tests, always cleaned up by pid."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# A child gets SIGTERM if the test run itself dies (killed, timed out), so no
# scheduler or worker outlives it; `stop` still ends them when a test ends.
_ORPHAN_GUARD = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
TASKYARD = [*_ORPHAN_GUARD, sys.executable, "-m", "taskyard.cli.main"]
REPO = Path(__file__).resolve().parents[2]
SAMPLE_TASKS = {"TASKYARD_TASK_MODULES": "tests.e2e.sample_tasks", "PYTHONPATH": str(REPO)}


def free_port() -> int:
    """A loopback port nobody listens on now (for a scheduler that must come back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SchedulerProcess:
    """A `taskyard scheduler` child process and how to reach it."""

    process: subprocess.Popen[str]
    address: str
    data_dir: Path
    #: The status page's address, when it serves one (`--http`).
    page: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for CLI commands talking to this scheduler as admin."""
        return {
            **os.environ,
            "TASKYARD_SCHEDULER": self.address,
            "TASKYARD_DATA_DIR": str(self.data_dir),
            **extra,
        }


def wait_for_line(
    process: subprocess.Popen[str], pattern: str, timeout: float = 30
) -> re.Match[str]:
    """Read the process's stdout until a line matches `pattern`."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if match := re.search(pattern, line):
                return match
        if process.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r} (exit code {process.poll()})")


def stop(process: subprocess.Popen[str], timeout: float = 20) -> int:
    """SIGTERM the process we started, by pid; SIGKILL its group if it lingers."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        return process.wait()
    finally:
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def scheduler(
    data_dir: Path,
    *args: str,
    listen: str = "127.0.0.1:0",
    env: dict[str, str] | None = None,
    command: Sequence[str] = TASKYARD,
) -> Iterator[SchedulerProcess]:
    """Run a scheduler (`command`: another installation's) until the block
    ends (SIGTERM then)."""
    process = subprocess.Popen(
        [*command, "scheduler", "--data-dir", str(data_dir), "--listen", listen, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, **SAMPLE_TASKS, **(env or {})},
    )
    try:
        match = wait_for_line(process, r"listening on (\S+)(?: \(status page: (\S+)/\))?")
        yield SchedulerProcess(process, match.group(1), data_dir, match.group(2) or "")
    finally:
        stop(process)


def taskyard(
    args: Sequence[str], env: dict[str, str], timeout: float = 60, command: Sequence[str] = TASKYARD
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion."""
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class WorkerProcess:
    """A `taskyard worker` child process."""

    process: subprocess.Popen[str]
    log: Path


@contextmanager
def worker(
    scheduler_address: str,
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    command: Sequence[str] = TASKYARD,
) -> Iterator[WorkerProcess]:
    """Run a worker (`command`: another installation's) until the block
    ends (SIGTERM then); its log goes to data_dir/worker.log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "worker.log"
    with open(log, "a", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [
                *command,
                "worker",
                "--scheduler",
                scheduler_address,
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=log_file,
            stderr=log_file,
            text=True,
            start_new_session=True,
            env={**os.environ, **SAMPLE_TASKS, **(env or {})},
        )
    try:
        yield WorkerProcess(process, log)
    finally:
        stop(process)
