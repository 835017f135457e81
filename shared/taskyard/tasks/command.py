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

import os
import shutil
import signal
import subprocess
from pathlib import PurePosixPath
from typing import Any, ClassVar

from taskyard.errors import FieldViolation, PermissionDeniedError, UnavailableError
from taskyard.tasks.base import Task
from taskyard.tasks.errors import TaskConfigError
from taskyard.tasks.sandbox import (
    UnsafeOutputError,
    output_file,
)

OUTPUT_CATEGORY = "taskyard:command-output"
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


class Command(Task):
    """Run a program with arguments in the task's sandbox."""

    TASK_VERSION = 1
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
        ran = self.run_program(argv, env=self.data.get("env", {}), timeout=self.data.get("timeout"))
        if ran.timed_out:
            raise CommandTimeoutError(f"{argv[0]} ran longer than its {self.data['timeout']:g}s")
        if ran.exceeded is not None:
            self.report(ran.exceeded.reason, f"{argv[0]} was killed: {ran.exceeded.message}")
            return False
        try:
            self._upload_outputs()
        except UnsafeOutputError as error:
            self.report("unsafe-output", error.message)
            return False
        self._report_exit(argv[0], ran.exit_code)
        return ran.exit_code == 0

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

    def _upload_outputs(self) -> None:
        """Upload the declared outputs the program produced, read without
        following any link (UnsafeOutputError, naming the path, otherwise)."""
        outputs = self.data.get("outputs", []) if self.data else []
        if not outputs:
            return
        found = {name: output_file(self.work_dir, name) for name in outputs}
        files = {name: path for name, path in found.items() if path is not None}
        missing = sorted(set(outputs) - set(files))
        if missing:
            self.logger.warning("declared outputs not produced: %s", ", ".join(missing))
        if not files:
            return
        if self.server_access is None:
            self.logger.warning("no server access: outputs %s not uploaded", sorted(files))
            return
        artifact = self.upload_artifact(OUTPUT_CATEGORY, files)
        self.logger.info("outputs uploaded as artifact %s", artifact)
