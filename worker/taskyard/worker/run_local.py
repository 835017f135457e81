"""`taskyard run-local`: run one task on this machine as a worker would,
without a scheduler.

For trying a task while writing it: every installed task loads (plugins
too), its programs run in the sandbox a worker gives them (or as plain
processes with `--executor process`), the files given with `--input` are in
its `inputs/`, what it uploads is written under `--output-dir`, and its
output shows as it comes. Ctrl-C aborts the task the way a scheduler abort
would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from taskyard.cli.errors import CliError
from taskyard.cli.json_arg import parse_json_object
from taskyard.errors import TaskyardError
from taskyard.tasks import Task, TaskConfigError, UnknownTaskError
from taskyard.tasks.command import ALLOWED_ENV, TASK_PATH_ENV
from taskyard.tasks.loading import load_tasks
from taskyard.worker.sandbox import for_attempt, limits, probe
from taskyard.worker.sandbox.settings import TASK_PATH, SandboxSettings


class LocalArtifacts:
    """Server access that writes each uploaded artifact under a directory."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._count = 0

    def upload_artifact(
        self,
        category: str,
        files: Mapping[str, Path],
        *,
        work_request_id: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        self._count += 1
        artifact = f"local-{self._count}"
        target = self._directory / f"{artifact}-{category.replace(':', '-')}"
        for name, path in files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / name)
        print(f"uploaded {category}: {target}", file=sys.stderr)
        return artifact


def run(args: argparse.Namespace) -> int:
    """Configure and execute the task; exit 0 on success, 1 on failure."""
    if args.allowed_commands:
        os.environ[ALLOWED_ENV] = ",".join(args.allowed_commands)
    for problem in load_tasks():
        print(f"taskyard: warning: {problem}", file=sys.stderr)
    task = _configured(args.task, parse_json_object(args.data, option="--data"))
    missing = [str(path) for path in args.inputs if not path.is_file()]
    if missing:
        raise CliError(f"--input {missing[0]} is not a file")
    with tempfile.TemporaryDirectory(prefix="taskyard-run-local-") as scratch:
        settings = probe.settle(
            args.executor, network=args.allow_network, memory_mb=0, processes=0, slots=1,
            data_dir=Path(scratch),
        )  # fmt: skip
        try:
            return _run(task, settings, Path(scratch) / "work", args)
        finally:
            limits.forget(settings.limiter)


def _configured(name: str, data: dict[str, Any]) -> Task:
    try:
        task = Task.class_from_name(name)()
        task.configure(data)
    except (UnknownTaskError, TaskConfigError) as error:
        raise CliError(error.message) from error
    if task.run_options.environment:
        raise CliError("run-local cannot fetch environments (artifacts): run this on a worker")
    return task


def _run(task: Task, settings: SandboxSettings, work_dir: Path, args: argparse.Namespace) -> int:
    (work_dir / "inputs").mkdir(parents=True)
    for path in args.inputs:
        shutil.copyfile(path, work_dir / "inputs" / path.name)
    if settings.sandboxed:
        os.environ[TASK_PATH_ENV] = TASK_PATH
    sandbox = for_attempt(settings, task.run_options, work_dir, f"run-local-{os.getpid()}")
    task.configure_sandbox(sandbox)
    task.configure_server_access(LocalArtifacts(args.output_dir.resolve()))
    task.configure_output(_show)

    def abort(_signum: int, _frame: FrameType | None) -> None:
        task.logger.warning("interrupted: aborting %s", task.name)
        task.abort()

    previous = signal.signal(signal.SIGINT, abort)
    try:
        succeeded = task.execute()
    except TaskyardError as error:  # the task refused (a program not allowed, a timeout...)
        raise CliError(f"{task.name}: {error.message}", 1) from error
    except Exception:
        task.logger.exception("task %s failed with an exception", task.name)  # a bug in it
        succeeded = False
    finally:
        signal.signal(signal.SIGINT, previous)
        sandbox.close()
    outcome = "aborted" if task.aborted else "success" if succeeded else "failure"
    why = f": {task.result_reason}" if task.result_reason and not succeeded else ""
    how = "sandboxed" if settings.sandboxed else "as plain processes"
    print(f"{task.name} {outcome}{why} (ran locally as a worker would, {how})")
    return 0 if succeeded else 1


def _show(stream: str, data: bytes) -> None:
    """The task's live output, on this terminal."""
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.flush()
    target.buffer.write(data)
    target.buffer.flush()
