"""The process groups a task's programs run in, so that whoever runs the task
can stop every one of them: on abort (the task itself, within its grace) and
when the process running the task has to go at once (the worker died, or the
task ignored its abort). A program that starts a session of its own leaves
its group, and so this reach: that is the mechanism's documented limit."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

_live: set[int] = set()
_lock = threading.Lock()


def started(pgid: int) -> None:
    """A program of a task now leads process group `pgid`."""
    with _lock:
        _live.add(pgid)


def ended(pgid: int) -> None:
    """The group `pgid` is gone (its leader was reaped after the group was killed)."""
    with _lock:
        _live.discard(pgid)


def signal_group(pgid: int, signum: int) -> None:
    """Send `signum` to group `pgid`, if it still has members."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def kill_all() -> None:
    """SIGKILL every group a task's programs lead now."""
    with _lock:
        groups = list(_live)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
