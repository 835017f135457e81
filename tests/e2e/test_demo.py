"""`make run` (`taskyard demo`) shows the system at work, line by line even
through a pipe (`make run | tee`), and stopping it stops everything it
started: Ctrl-C, or SIGTERM (as `make` forwards when killed)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.processes import TASKYARD

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _read_until(demo: subprocess.Popen[str], marker: str, timeout: float = 60.0) -> str:
    """What the demo printed, up to at least `marker` (read from the pipe
    itself: a buffered reader would hide lines from `select`)."""
    assert demo.stdout is not None
    pipe, seen = demo.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        ready, _, _ = select.select([pipe], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(pipe, 65536) if ready else b""
        assert chunk, f"the demo stopped or stalled before {marker!r}:\n{seen.decode()}"
        seen += chunk
    return seen.decode()


@pytest.mark.parametrize(
    "stop",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
    ids=["ctrl-c", "sigterm", "terminal-closed", "demo-killed"],
)
def test_the_demo_runs_requests_and_stopping_it_stops_what_it_started(
    tmp_path: Path, stop: signal.Signals
) -> None:
    demo = subprocess.Popen(
        [*TASKYARD, "demo", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )  # fmt: skip
    started: list[int] = []
    try:
        shown = _read_until(demo, "press Ctrl-C")
        assert shown.count("completed (success)") == 3
        assert "completed (failure)" in shown  # the demo's noop that fails on purpose
        page = re.search(r"status page: (http://127\.0\.0\.1:\d+/)", shown)
        assert page is not None, shown
        with urllib.request.urlopen(page.group(1) + "requests") as response:
            assert "completed: failure" in response.read().decode()
        started = _children(demo.pid)
        assert len(started) == 3  # a scheduler and two workers
        demo.send_signal(stop)
        output, _ = demo.communicate(timeout=120)
        if stop is not signal.SIGKILL:
            assert demo.returncode == 0, output
            assert "all stopped" in output
        deadline = time.monotonic() + 30  # a killed demo's children stop by themselves
        while [pid for pid in started if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in started if _alive(pid)]
    finally:
        _stop_all(demo, started)


def _stop_all(demo: subprocess.Popen[str], started: list[int]) -> None:
    """However the test ended: stop the demo and every process it started
    (SIGTERM first, so the workers end their executors)."""
    if demo.poll() is None:
        started += [pid for pid in _children(demo.pid) if pid not in started]
    if demo.poll() is None:
        demo.terminate()
    for pid in started:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while demo.poll() is None or any(_alive(pid) for pid in started):
        if time.monotonic() > deadline:
            for pid in [demo.pid, *started]:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    demo.wait()
    if demo.stdout is not None:
        demo.stdout.close()
