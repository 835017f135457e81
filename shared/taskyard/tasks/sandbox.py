"""Where a task's programs run: the sandbox port, and its plain-process adapter.

A task starts a program through `self.sandbox.start(argv, env)`, never by
itself. On a worker the sandbox is the attempt's own Linux namespaces
(`taskyard.worker.sandbox`: nothing of the worker, other tasks or the host's
processes in view, no network unless asked for, limits enforced); with
`taskyard worker --executor process`, and for a task run outside a worker,
it is `PlainProcesses`: a process group of the worker's user in the
working directory, with the worker's environment.

Either way the attempt's working directory is `sandbox.work_dir` (on the
worker's side of the sandbox), and what a task reads back from it after its
programs ran goes through `output_file()`, which never follows a link.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from taskyard.errors import FailedPreconditionError
from taskyard.tasks import process_groups


@dataclass(frozen=True)
class LimitExceeded:
    """A limit a program went past: the failure's reason and what it says."""

    reason: str  # memory-limit, process-limit
    message: str


class Program(Protocol):
    """A program started in a sandbox, with its stdout and stderr pipes."""

    pid: int
    stdout: IO[bytes]
    stderr: IO[bytes]

    def running(self) -> bool:
        """Whether its main process is still running (it is not reaped here)."""
        ...

    def signal(self, signum: int) -> None:
        """Send `signum` to every process of the program."""
        ...

    def limit_exceeded(self) -> LimitExceeded | None:
        """The limit the program went past, if the sandbox can tell."""
        ...

    def wait(self) -> int:
        """Wait for the main process, stop whatever else of the program is
        left, and return the exit status (negative: the signal that ended it)."""
        ...


class Sandbox(Protocol):
    """The place an attempt's programs run in."""

    #: The attempt's working directory, as the worker sees it.
    work_dir: Path

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> Program:
        """Start `argv` in the working directory with `env` added to the
        environment; OSError if it cannot be started."""
        ...


class PlainProcesses:
    """Programs as plain child processes, each leading a process group: no
    isolation (for trusted farms and for tasks run outside a worker)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> Program:
        process = subprocess.Popen(
            list(argv),
            cwd=self.work_dir,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,  # stopping the group stops the program's children
        )
        process_groups.started(process.pid)
        return PlainProgram(process)


class PlainProgram:
    """A program leading a process group of its own (what other adapters'
    programs build on: their first process leads one too)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        self._process = process
        self.pid = process.pid
        self.stdout: IO[bytes] = process.stdout
        self.stderr: IO[bytes] = process.stderr

    def running(self) -> bool:
        found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return found is None

    def signal(self, signum: int) -> None:
        process_groups.signal_group(self.pid, signum)

    def limit_exceeded(self) -> LimitExceeded | None:
        return None

    def wait(self) -> int:
        # Exited, and still unreaped: its pid (the group's id) cannot have
        # been reused, and whatever it left in its group goes with it.
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        process_groups.signal_group(self.pid, signal.SIGKILL)
        code = self._process.wait()
        process_groups.ended(self.pid)
        return code


class UnsafeOutputError(FailedPreconditionError):
    """An output is a link, or not a regular file inside the working directory."""

    default_reason = "UNSAFE_OUTPUT"


def output_file(work_dir: Path, name: str) -> Path | None:
    """The regular file `name` (relative) in `work_dir`, reached without
    following any link; None if there is nothing there.

    Raises UnsafeOutputError, naming the path, for a link (to the worker's
    token, say) or anything else that is not a plain file inside.
    """
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise UnsafeOutputError(f"output {name!r} is not a path inside the working directory")
    path = work_dir
    for index, part in enumerate(parts):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return None
        last = index == len(parts) - 1
        if stat.S_ISLNK(mode):
            raise UnsafeOutputError(
                f"output {name!r} is a symbolic link; outputs are never read through links"
            )
        if not last and not stat.S_ISDIR(mode):
            return None
        if last and not stat.S_ISREG(mode):
            raise UnsafeOutputError(f"output {name!r} is not a regular file")
    return path
