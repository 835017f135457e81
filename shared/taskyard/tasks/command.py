"""The `command` task: run a program with arguments, never through a shell.

The worker says which programs it allows (`allowed_commands` in its config,
handed to this task as TASKYARD_ALLOWED_COMMANDS); `analyze_worker()` reports
which of them are installed, and `can_run_on()` requires the program to be
allowed and installed there. The program runs in a fresh temporary directory;
its stdout and stderr become debug log files, and declared output files are
uploaded as an artifact of category `taskyard:command-output`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from taskyard.errors import FieldViolation, PermissionDeniedError, UnavailableError
from taskyard.tasks import process_groups
from taskyard.tasks.base import Task
from taskyard.tasks.errors import TaskConfigError

OUTPUT_CATEGORY = "taskyard:command-output"
ALLOWED_ENV = "TASKYARD_ALLOWED_COMMANDS"


def _exited(pid: int) -> bool:
    """Whether the child `pid` has exited, leaving it unreaped."""
    found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return found is not None


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


class Command(Task):
    """Run a program with arguments in a fresh temporary directory."""

    TASK_VERSION = 1
    _timed_out = False
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
        """Report each allowed program found on PATH, with its version if it says."""
        metadata = super().analyze_worker()
        available = {}
        for program in allowed_commands():
            path = shutil.which(program)
            if path is not None:
                available[program] = program_version(path)
        metadata[self.prefix_with_task_name("available")] = available
        return metadata

    def can_run_on(self, worker_metadata: dict[str, Any]) -> bool:
        """Require the program to be allowed and installed on the worker."""
        if not super().can_run_on(worker_metadata):
            return False
        assert self.data is not None
        available = worker_metadata.get(self.prefix_with_task_name("available"), {})
        return isinstance(available, dict) and self.data["command"][0] in available

    def cannot_run_reason(self, worker_metadata: dict[str, Any]) -> str:
        """Which program the worker lacks, and whether it is not allowed or not installed."""
        assert self.data is not None
        program = self.data["command"][0]
        available = worker_metadata.get(self.prefix_with_task_name("available"), {})
        if isinstance(available, dict) and program in available:
            return super().cannot_run_reason(worker_metadata)
        return (
            f"the worker does not offer {program!r}: it is not allowed there "
            f"(taskyard worker --allow-command {program}) or not installed"
        )

    def _execute(self) -> bool:
        assert self.data is not None
        argv: list[str] = self.data["command"]
        if argv[0] not in allowed_commands():
            raise CommandNotAllowedError(f"this worker does not allow the program {argv[0]!r}")
        with tempfile.TemporaryDirectory(prefix="taskyard-command-") as directory:
            code = self._run(argv, Path(directory))
            self._upload_outputs(Path(directory))
        if self._timed_out:
            raise CommandTimeoutError(f"{argv[0]} ran longer than its {self.data['timeout']:g}s")
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

    def _run(self, argv: list[str], directory: Path) -> int | None:
        env = {**os.environ, **self.data.get("env", {})} if self.data else dict(os.environ)
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
                # A group of its own: stopping the program stops its children.
                process = subprocess.Popen(
                    argv,
                    cwd=directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    process_group=0,
                )
            except OSError as error:
                logs["stderr"].write(f"taskyard: cannot start {argv[0]}: {error}\n".encode())
                return None
            process_groups.started(process.pid)
            pumps = [
                threading.Thread(target=logs[name].pump, args=(pipe,), daemon=True)
                for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr))
            ]
            for pump in pumps:
                pump.start()
            try:
                self._supervise(process, argv[0], timeout, logs["stderr"])
            finally:
                # Whatever the program left in its group goes with it. The
                # program is still unreaped here, so its pid (the group id)
                # cannot have been reused.
                process_groups.signal_group(process.pid, signal.SIGKILL)
                for pump in pumps:
                    pump.join()
                process.wait()
                process_groups.ended(process.pid)
            return process.returncode

    def _supervise(
        self, process: subprocess.Popen[bytes], name: str, timeout: float | None, notes: _Stream
    ) -> None:
        """Wait for the program to exit (without reaping it); stop its group
        on abort or timeout: SIGTERM, then SIGKILL once the grace is over."""
        deadline = time.monotonic() + timeout if timeout else None
        stop_at: float | None = None
        while not _exited(process.pid):
            if stop_at is None and (
                self.wait_for_abort(0.05) or (deadline and time.monotonic() > deadline)
            ):
                self._timed_out = not self.aborted
                why = "aborted" if self.aborted else f"timed out after {timeout:g}s"
                notes.write(f"\ntaskyard: {why}; stopping {name}\n".encode())
                process_groups.signal_group(process.pid, signal.SIGTERM)
                stop_at = time.monotonic() + self.abort_grace
            elif stop_at is not None:
                if time.monotonic() >= stop_at:
                    process_groups.signal_group(process.pid, signal.SIGKILL)
                time.sleep(0.02)

    def _upload_outputs(self, directory: Path) -> None:
        outputs = self.data.get("outputs", []) if self.data else []
        if not outputs:
            return
        files = {name: directory / name for name in outputs if (directory / name).is_file()}
        missing = sorted(set(outputs) - set(files))
        if missing:
            self.logger.warning("declared outputs not produced: %s", ", ".join(missing))
        if self.server_access is None:
            self.logger.warning("no server access: outputs %s not uploaded", sorted(files))
            return
        artifact = self.server_access.upload_artifact(
            OUTPUT_CATEGORY, files, work_request_id=self.work_request_id
        )
        self.logger.info("outputs uploaded as artifact %s", artifact)
