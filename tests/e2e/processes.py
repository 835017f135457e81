"""Real Taskyard processes for end-to-end tests, always cleaned up by pid."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TASKYARD = [sys.executable, "-m", "taskyard.cli.main"]


@dataclass
class SchedulerProcess:
    """A `taskyard scheduler` child process and how to reach it."""

    process: subprocess.Popen[str]
    address: str
    data_dir: Path

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
def scheduler(data_dir: Path, *args: str) -> Iterator[SchedulerProcess]:
    """Run a scheduler on a free loopback port until the block ends (SIGTERM then)."""
    process = subprocess.Popen(
        [*TASKYARD, "scheduler", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        match = wait_for_line(process, r"listening on (\S+)")
        yield SchedulerProcess(process, match.group(1), data_dir)
    finally:
        stop(process)


def taskyard(
    args: Sequence[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion."""
    return subprocess.run(
        [*TASKYARD, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
