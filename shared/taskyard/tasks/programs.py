"""Running one program of a task to its end, in the task's sandbox.

The program's stdout and stderr go, byte for byte the same, to the task's
debug log files (`stdout.txt`, `stderr.txt`, appended to by each program of
an attempt) and to its live output. Its supervision sleeps until the program
exits or the task is aborted (a pidfd and a pipe `abort()` writes to): on
abort or timeout the program gets SIGTERM, then SIGKILL once the task's
abort grace is over; past a limit of its sandbox, SIGKILL at once.
`Task.run_program()` is the way in.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from taskyard.tasks.sandbox import LimitExceeded, Program, Sandbox

if TYPE_CHECKING:
    from taskyard.tasks.base import Task

#: Seconds between looks at a running program's limit counters.
LIMIT_CHECK = 0.1


@dataclass(frozen=True)
class ProgramResult:
    """How a program ended."""

    #: Its exit status (negative: the signal that ended it); None if it
    #: could not be started (why is in the task's stderr).
    exit_code: int | None
    #: The limit of its sandbox it went past, if it did (it was killed).
    exceeded: LimitExceeded | None = None
    #: It ran past its timeout and was stopped.
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.exceeded is None and not self.timed_out


class _Stream:
    """One of the program's output streams: a debug log file and live output."""

    def __init__(self, task: Task, name: str, file: IO[bytes]) -> None:
        self._task, self._name, self._file = task, name, file
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._file.write(data)
            self._file.flush()
            self._task.emit_output(self._name, data)

    def pump(self, pipe: IO[bytes]) -> None:
        """Copy the pipe here until its end (every writer gone)."""
        with pipe:
            while data := os.read(pipe.fileno(), 64 * 1024):
                self.write(data)


class _Wakeups:
    """What supervision waits on: the program's exit (a pidfd), and a pipe
    the task's `abort()` writes to."""

    def __init__(self, pid: int, task: Task) -> None:
        self._task = task
        self._pidfd = os.pidfd_open(pid)
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._poll = select.poll()
        self._poll.register(self._pidfd, select.POLLIN)
        self._poll.register(self._read, select.POLLIN)

    def __enter__(self) -> _Wakeups:
        self._task.wake_on_abort(self._write)
        return self

    def wait(self, seconds: float) -> None:
        """Until the program exits, an abort, or `seconds` pass."""
        if self._poll.poll(max(0.0, seconds) * 1000):
            with contextlib.suppress(BlockingIOError):
                os.read(self._read, 64)

    def __exit__(self, *_: object) -> None:
        self._task.wake_on_abort(self._write, False)  # no abort writes to it once closed
        for fd in (self._pidfd, self._read, self._write):
            os.close(fd)


def run(
    task: Task,
    sandbox: Sandbox,
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float | None,
) -> ProgramResult:
    """Run `argv` in `sandbox` to its end, as described above."""
    with (
        task.create_debug_log_file("stdout.txt", mode="ab") as stdout,
        task.create_debug_log_file("stderr.txt", mode="ab") as stderr,
    ):
        streams = {
            "stdout": _Stream(task, "stdout", stdout),
            "stderr": _Stream(task, "stderr", stderr),
        }
        try:
            program = sandbox.start(argv, env)
        except OSError as error:
            streams["stderr"].write(f"taskyard: cannot start {argv[0]}: {error}\n".encode())
            return ProgramResult(None)
        pumps = [
            threading.Thread(target=streams[name].pump, args=(pipe,), daemon=True)
            for name, pipe in (("stdout", program.stdout), ("stderr", program.stderr))
        ]
        for pump in pumps:
            pump.start()
        try:
            exceeded, timed_out = _supervise(task, program, argv[0], timeout, streams["stderr"])
        finally:
            code = program.wait()  # stops whatever of it is left: the pipes end
            for pump in pumps:
                pump.join()
        return ProgramResult(code, exceeded or program.limit_exceeded(), timed_out)


def _supervise(
    task: Task, program: Program, name: str, timeout: float | None, notes: _Stream
) -> tuple[LimitExceeded | None, bool]:
    """Wait for the program to exit (without reaping it), stopping it on
    abort, timeout or a limit; (the limit, whether it timed out)."""
    deadline = time.monotonic() + timeout if timeout else None
    stop_at: float | None = None
    timed_out = False
    with _Wakeups(program.pid, task) as wakeups:
        while program.running():
            exceeded = program.limit_exceeded()
            if exceeded is not None:
                notes.write(f"\ntaskyard: {exceeded.message}; killing {name}\n".encode())
                program.signal(signal.SIGKILL)
                return exceeded, False
            now = time.monotonic()
            if stop_at is None and (task.aborted or (deadline and now > deadline)):
                timed_out = not task.aborted
                why = "aborted" if task.aborted else f"timed out after {timeout:g}s"
                notes.write(f"\ntaskyard: {why}; stopping {name}\n".encode())
                program.signal(signal.SIGTERM)
                stop_at = now + task.abort_grace
            elif stop_at is not None and now >= stop_at:
                program.signal(signal.SIGKILL)
            next_at = stop_at if stop_at is not None else deadline
            wakeups.wait(LIMIT_CHECK if next_at is None else min(LIMIT_CHECK, next_at - now))
    return None, timed_out
