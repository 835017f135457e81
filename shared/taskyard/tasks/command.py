"""The `command` task: run a program with arguments, never through a shell.

The worker says which programs it allows (`allowed_commands` in its config,
handed to this task as TASKYARD_ALLOWED_COMMANDS); `analyze_worker()` reports
which of them are installed, and `can_run_on()` requires the program to be
allowed and installed there (in an environment: allowed). The program runs in
the task's sandbox (`taskyard.tasks.sandbox`), in the attempt's working
directory; its stdout and stderr become debug log files, and declared output
files are uploaded as an artifact of category `taskyard:command-output`,
never read through a link.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from taskyard.errors import FieldViolation, PermissionDeniedError, UnavailableError
from taskyard.tasks.base import Task
from taskyard.tasks.errors import TaskConfigError
from taskyard.tasks.sandbox import (
    LimitExceeded,
    PlainProcesses,
    Program,
    Sandbox,
    UnsafeOutputError,
    output_file,
)

OUTPUT_CATEGORY = "taskyard:command-output"
#: Seconds between looks at a running program's limit counters.
LIMIT_CHECK = 0.1
ALLOWED_ENV = "TASKYARD_ALLOWED_COMMANDS"
#: The PATH the worker's sandbox gives programs (set by the worker; unset:
#: programs get the worker's own PATH).
TASK_PATH_ENV = "TASKYARD_TASK_PATH"


def allowed_commands() -> list[str]:
    """The programs this worker allows, from TASKYARD_ALLOWED_COMMANDS."""
    return [name.strip() for name in os.environ.get(ALLOWED_ENV, "").split(",") if name.strip()]


def program_version(path: str) -> str:
    """The first line of `PROGRAM --version`, if it answers within a second."""
    try:
        answer = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=1, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = (answer.stdout or answer.stderr).strip().splitlines()
    return lines[0][:200] if answer.returncode == 0 and lines else ""


class CommandNotAllowedError(PermissionDeniedError):
    """The worker does not allow the program."""

    default_reason = "COMMAND_NOT_ALLOWED"


class CommandTimeoutError(UnavailableError):
    """The program ran longer than the task data's `timeout`: the attempt
    ends as error/timeout, as with the request's own timeout."""

    default_reason = "TIMEOUT"


class _Stream:
    """One of the program's output streams: kept as a debug log file and
    sent live, byte for byte the same."""

    def __init__(self, task: Task, name: str, file: IO[bytes]) -> None:
        self._task, self._name, self._file = task, name, file
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._file.write(data)
            self._file.flush()
            self._task.emit_output(self._name, data)

    def pump(self, pipe: IO[bytes] | None) -> None:
        """Copy the pipe here until its end (every writer gone)."""
        assert pipe is not None
        with pipe:
            while data := os.read(pipe.fileno(), 64 * 1024):
                self.write(data)


class _Wakeups:
    """What the supervision of a program waits on: its exit (a pidfd), and a
    pipe the task's `abort()` writes to."""

    def __init__(self, pid: int, task: Command) -> None:
        self._task = task
        self._pidfd = os.pidfd_open(pid)
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._poll = select.poll()
        self._poll.register(self._pidfd, select.POLLIN)
        self._poll.register(self._read, select.POLLIN)

    def __enter__(self) -> _Wakeups:
        with self._task._waking:
            self._task._wake = self._write
        return self

    def wait(self, seconds: float) -> None:
        """Until the program exits, an abort, or `seconds` pass."""
        if self._poll.poll(max(0.0, seconds) * 1000):
            with contextlib.suppress(BlockingIOError):
                os.read(self._read, 64)

    def __exit__(self, *_: object) -> None:
        with self._task._waking:  # no abort writes to a descriptor closed here
            self._task._wake = None
        for fd in (self._pidfd, self._read, self._write):
            os.close(fd)


class Command(Task):
    """Run a program with arguments in the task's sandbox."""

    TASK_VERSION = 1
    _timed_out = False
    #: Written to by `abort()` while a program runs (see `_Wakeups`).
    _wake: int | None = None
    _waking = threading.Lock()
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["command"],
        "properties": {
            "command": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": "program and arguments; the program is looked up on PATH",
            },
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "extra environment variables",
            },
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
            "outputs": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "description": "files (relative to the directory) to upload when done",
            },
        },
        "additionalProperties": False,
    }

    def configure(self, task_data: dict[str, Any]) -> None:
        """Validate the data, and that output paths stay inside the directory."""
        super().configure(task_data)
        for index, output in enumerate(task_data.get("outputs", [])):
            path = PurePosixPath(output)
            if path.is_absolute() or ".." in path.parts or "\0" in output:
                self.data = None
                description = "must be a relative path inside the working directory"
                raise TaskConfigError(
                    self.name, [FieldViolation(f"$.outputs[{index}]", description)]
                )

    def analyze_worker(self) -> dict[str, Any]:
        """Report the allowed programs, and each one found on the PATH its
        programs get (`TASKYARD_TASK_PATH`: the sandbox's), with its version
        if it says."""
        metadata = super().analyze_worker()
        available = {}
        for program in allowed_commands():
            path = shutil.which(program, path=os.environ.get(TASK_PATH_ENV))
            if path is not None:
                available[program] = program_version(path)
        metadata[self.prefix_with_task_name("available")] = available
        metadata[self.prefix_with_task_name("allowed")] = allowed_commands()
        return metadata

    def can_run_on(self, worker_metadata: dict[str, Any]) -> bool:
        """Require the program to be allowed and installed on the worker (in
        an environment, only allowed: the environment has its own programs)."""
        if not super().can_run_on(worker_metadata):
            return False
        return self._offered(worker_metadata)

    def _offered(self, worker_metadata: dict[str, Any]) -> bool:
        assert self.data is not None
        program = self.data["command"][0]
        key = "allowed" if self.run_options.environment else "available"
        offered = worker_metadata.get(self.prefix_with_task_name(key), {})
        return isinstance(offered, dict | list) and program in offered

    def cannot_run_reason(self, worker_metadata: dict[str, Any]) -> str:
        """Which program the worker lacks, and whether it is not allowed or not installed."""
        assert self.data is not None
        if self._offered(worker_metadata):
            return super().cannot_run_reason(worker_metadata)
        program = self.data["command"][0]
        if self.run_options.environment:
            return (
                f"the worker does not allow {program!r} (taskyard worker --allow-command {program})"
            )
        return (
            f"the worker does not offer {program!r}: it is not allowed there "
            f"(taskyard worker --allow-command {program}) or not installed"
        )

    def _execute(self) -> bool:
        assert self.data is not None
        argv: list[str] = self.data["command"]
        if argv[0] not in allowed_commands():
            raise CommandNotAllowedError(f"this worker does not allow the program {argv[0]!r}")
        if self.sandbox is not None:
            return self._run_in(self.sandbox, argv)
        with tempfile.TemporaryDirectory(prefix="taskyard-command-") as directory:
            return self._run_in(PlainProcesses(Path(directory)), argv)

    def _run_in(self, sandbox: Sandbox, argv: list[str]) -> bool:
        code, exceeded = self._run(argv, sandbox)
        if self._timed_out:
            timeout = self.data["timeout"] if self.data else 0
            raise CommandTimeoutError(f"{argv[0]} ran longer than its {timeout:g}s")
        if exceeded is not None:
            self.report(exceeded.reason, f"{argv[0]} was killed: {exceeded.message}")
            return False
        try:
            self._upload_outputs(sandbox.work_dir)
        except UnsafeOutputError as error:
            self.report("unsafe-output", error.message)
            return False
        self._report_exit(argv[0], code)
        return code == 0

    def _report_exit(self, program: str, code: int | None) -> None:
        """Record how the program ended: its exit code, or the signal."""
        if code is None:
            self.report("not-started", f"{program} could not be started")
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            self.report(
                "signal", f"{program} was ended by {name}", signal=name, signal_number=-code
            )
        elif code:
            self.report("exit-code", f"{program} exited with {code}", exit_code=code)
        else:
            self.report(exit_code=0)

    def _run(self, argv: list[str], sandbox: Sandbox) -> tuple[int | None, LimitExceeded | None]:
        """Run the program to its end: its exit status (None: it could not
        start) and the limit it went past, if it did."""
        env = dict(self.data.get("env", {})) if self.data else {}
        timeout = self.data.get("timeout") if self.data else None
        self._timed_out = False
        with (
            self.create_debug_log_file("stdout.txt", mode="wb") as stdout,
            self.create_debug_log_file("stderr.txt", mode="wb") as stderr,
        ):
            logs = {
                "stdout": _Stream(self, "stdout", stdout),
                "stderr": _Stream(self, "stderr", stderr),
            }
            try:
                program = sandbox.start(argv, env)
            except OSError as error:
                logs["stderr"].write(f"taskyard: cannot start {argv[0]}: {error}\n".encode())
                return None, None
            pumps = [
                threading.Thread(target=logs[name].pump, args=(pipe,), daemon=True)
                for name, pipe in (("stdout", program.stdout), ("stderr", program.stderr))
            ]
            for pump in pumps:
                pump.start()
            try:
                exceeded = self._supervise(program, argv[0], timeout, logs["stderr"])
            finally:
                code = program.wait()  # stops whatever of it is left: the pipes end
                for pump in pumps:
                    pump.join()
            return code, exceeded or program.limit_exceeded()

    def _supervise(
        self, program: Program, name: str, timeout: float | None, notes: _Stream
    ) -> LimitExceeded | None:
        """Wait for the program to exit (without reaping it); stop it on
        abort or timeout (SIGTERM, then SIGKILL once the grace is over), and
        at once when it goes past a limit (which is returned). Woken by its
        exit (a pidfd) or an abort, never a fixed tick: a limit's counters
        are looked at every LIMIT_CHECK while it runs."""
        deadline = time.monotonic() + timeout if timeout else None
        stop_at: float | None = None
        with _Wakeups(program.pid, self) as wakeups:
            while program.running():
                exceeded = program.limit_exceeded()
                if exceeded is not None:
                    notes.write(f"\ntaskyard: {exceeded.message}; killing {name}\n".encode())
                    program.signal(signal.SIGKILL)
                    return exceeded
                now = time.monotonic()
                if stop_at is None and (self.aborted or (deadline and now > deadline)):
                    self._timed_out = not self.aborted
                    why = "aborted" if self.aborted else f"timed out after {timeout:g}s"
                    notes.write(f"\ntaskyard: {why}; stopping {name}\n".encode())
                    program.signal(signal.SIGTERM)
                    stop_at = now + self.abort_grace
                elif stop_at is not None and now >= stop_at:
                    program.signal(signal.SIGKILL)
                next_at = stop_at if stop_at is not None else deadline
                wakeups.wait(LIMIT_CHECK if next_at is None else min(LIMIT_CHECK, next_at - now))
        return None

    def abort(self) -> None:
        """Mark the task aborted and wake its supervision at once."""
        super().abort()
        with self._waking:
            if self._wake is not None:
                os.write(self._wake, b"x")

    def _upload_outputs(self, directory: Path) -> None:
        """Upload the declared outputs the program produced, read without
        following any link (UnsafeOutputError, naming the path, otherwise)."""
        outputs = self.data.get("outputs", []) if self.data else []
        if not outputs:
            return
        found = {name: output_file(directory, name) for name in outputs}
        files = {name: path for name, path in found.items() if path is not None}
        missing = sorted(set(outputs) - set(files))
        if missing:
            self.logger.warning("declared outputs not produced: %s", ", ".join(missing))
        if not files:
            return
        if self.server_access is None:
            self.logger.warning("no server access: outputs %s not uploaded", sorted(files))
            return
        artifact = self.server_access.upload_artifact(
            OUTPUT_CATEGORY, files, work_request_id=self.work_request_id
        )
        self.logger.info("outputs uploaded as artifact %s", artifact)
