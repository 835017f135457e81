"""The Task base class: one object validates, matches and executes a task.

On the scheduler a task is configured with the submitted data (validation) and
asked `can_run_on(worker_metadata)` (matching); on the worker the same class
reports `analyze_worker()` metadata and runs `execute()`.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

from jsonschema import Draft202012Validator, SchemaError

from taskyard.errors import FieldViolation, UnavailableError
from taskyard.tasks import programs, run_options
from taskyard.tasks.errors import TaskConfigError, TaskDefinitionError, UnknownTaskError
from taskyard.tasks.programs import ProgramResult
from taskyard.tasks.run_options import RunOptions
from taskyard.tasks.sandbox import PlainProcesses, Sandbox, UnsafeOutputError, output_file
from taskyard.tasks.schema import compile_schema, violations
from taskyard.tasks.server_access import ServerAccess

#: Category of the artifact `execute()` uploads the debug log files in.
DEBUG_LOGS_CATEGORY = "taskyard:work-request-debug-logs"

_WRITE_MODES = frozenset({"w", "wb", "a", "ab", "x", "xb"})


class Task(ABC):
    """Base class for tasks.

    A concrete subclass sets an integer `TASK_VERSION`, optionally a
    `TASK_DATA_SCHEMA`, and implements `_execute()`. Defining it registers it
    under its lowercased class name; classes that leave an abstract method
    unimplemented are intermediate bases and are not registered.
    """

    #: JSON Schema (Draft 2020-12) the task data must satisfy; checked at class creation.
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {}

    #: Version of the task's code. A worker is only given a task whose version
    #: it reports equal to the scheduler's.
    TASK_VERSION: ClassVar[int | None] = None

    #: Execution timeout of an attempt when the submitter sets none; None: no timeout.
    DEFAULT_TIMEOUT_SECONDS: ClassVar[float | None] = None

    #: Every concrete task class, by lowercased name.
    _sub_tasks: ClassVar[dict[str, type[Task]]] = {}

    _validator: ClassVar[Draft202012Validator] = compile_schema(TASK_DATA_SCHEMA)

    #: The task's name: its class name lowercased.
    name: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the class definition and register concrete tasks in `_sub_tasks`."""
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__.lower()
        if "TASK_DATA_SCHEMA" in cls.__dict__:
            try:
                cls._validator = compile_schema(cls.TASK_DATA_SCHEMA)
            except SchemaError as error:
                raise TaskDefinitionError(
                    f"{cls.__qualname__}.TASK_DATA_SCHEMA is not a valid JSON Schema "
                    f"(Draft 2020-12): {error.message}"
                ) from error
            taken = sorted(
                set(cls.TASK_DATA_SCHEMA.get("properties", {})) & set(run_options.RESERVED)
            )
            if taken:
                raise TaskDefinitionError(
                    f"{cls.__qualname__}.TASK_DATA_SCHEMA declares {taken}: those keys are "
                    "reserved for every task (taskyard.tasks.run_options)"
                )
        if inspect.isabstract(cls):
            return
        version = cls.TASK_VERSION
        if not isinstance(version, int) or isinstance(version, bool):
            raise TaskDefinitionError(
                f"{cls.__qualname__} must set TASK_VERSION to an integer, not {version!r}"
            )
        existing = Task._sub_tasks.get(cls.name)
        if existing is not None:
            raise TaskDefinitionError(
                f"task name {cls.name!r} of {cls.__module__}.{cls.__qualname__} is already "
                f"registered by {existing.__module__}.{existing.__qualname__}; rename one of them"
            )
        Task._sub_tasks[cls.name] = cls

    def __init__(self) -> None:
        """Initialize the task."""
        self.name = type(self).__name__.lower()
        self.logger = logging.getLogger(f"taskyard.tasks.{self.name}")
        #: Validated task data, set by `configure()`.
        self.data: dict[str, Any] | None = None
        #: Id of the work request this task runs for; set by the worker.
        self.work_request_id: str | None = None
        self.server_access: ServerAccess | None = None
        #: What the task data asks of the sandbox (its reserved keys), set by `configure()`.
        self.run_options = RunOptions()
        #: Where the task's programs run; set by the worker (see `configure_sandbox()`).
        self.sandbox: Sandbox | None = None
        self._aborted = threading.Event()
        #: Pipes `abort()` writes to, to wake whoever waits on a program.
        self._abort_wakeups: set[int] = set()
        self._wakeups_lock = threading.Lock()
        #: A temporary working directory, when the task runs without a sandbox.
        self._own_work_dir: tempfile.TemporaryDirectory[str] | None = None
        #: Seconds the task has, from `abort()`, to stop every process it
        #: started; the worker sets it from its abort grace.
        self.abort_grace: float = 10.0
        #: How the task ended, beside `_execute()`'s bool (see `report()`).
        self.result_details: dict[str, Any] = {}
        #: Why the task failed or erred, in kebab-case (see `report()`).
        self.result_reason: str | None = None
        self.result_message: str = ""
        self._output: Callable[[str, bytes], None] | None = None
        self._debug_log_dir: Path | None = None
        self._debug_log_files: dict[str, IO[Any]] = {}

    # -- Registry ---------------------------------------------------------

    @staticmethod
    def class_from_name(sub_task_class_name: str) -> type[Task]:
        """Return the registered class called `sub_task_class_name` (case-insensitive).

        Raises UnknownTaskError (a ValueError) naming the known tasks otherwise.
        """
        task_class = Task._sub_tasks.get(str(sub_task_class_name).lower())
        if task_class is None:
            raise UnknownTaskError(str(sub_task_class_name), Task.task_names())
        return task_class

    @staticmethod
    def is_valid_task_name(task_name: str) -> bool:
        """Return True if `task_name` is registered (case-insensitive)."""
        return isinstance(task_name, str) and task_name.lower() in Task._sub_tasks

    @staticmethod
    def task_names() -> list[str]:
        """Return the sorted names of the registered tasks."""
        return sorted(Task._sub_tasks)

    # -- Matching ---------------------------------------------------------

    def prefix_with_task_name(self, text: str) -> str:
        """Return `text` prefixed with the task name and a colon."""
        return f"{self.name}:{text}"

    def analyze_worker(self) -> dict[str, Any]:
        """Return metadata about the current worker, keyed `<task name>:<key>`.

        Subclasses extend it: `metadata = super().analyze_worker()`, then add
        keys made with `prefix_with_task_name()`.
        """
        return {self.prefix_with_task_name("version"): self.TASK_VERSION}

    @classmethod
    def analyze_worker_all_tasks(cls) -> dict[str, Any]:
        """Return the merged `analyze_worker()` metadata of every registered task."""
        metadata: dict[str, Any] = {}
        for task_class in Task._sub_tasks.values():
            metadata.update(task_class().analyze_worker())
        return metadata

    def can_run_on(self, worker_metadata: dict[str, Any]) -> bool:
        """Return True if the worker described by `worker_metadata` can run this task.

        Decided on `worker_metadata` and `self.data` only. The base rule: the
        worker must run the same TASK_VERSION as this side, and offer what
        the data's reserved keys ask of its sandbox (network, environment,
        limits). Subclasses call `super().can_run_on()` first, then add their
        own checks.
        """
        if worker_metadata.get(self.prefix_with_task_name("version")) != self.TASK_VERSION:
            return False
        return self.run_options.unmet_by(worker_metadata) is None

    def cannot_run_reason(self, worker_metadata: dict[str, Any]) -> str:
        """Why `can_run_on(worker_metadata)` says no, for a person (an
        optional addition to the seed's API: `explain` and a submit's
        warning show it). The default names the check; a task that adds
        checks to `can_run_on()` says which of them failed."""
        unmet = self.run_options.unmet_by(worker_metadata)
        if unmet is not None:
            return unmet
        return f"{self.name}.can_run_on() refused the worker's metadata"

    # -- Configuration ----------------------------------------------------

    def configure(self, task_data: dict[str, Any]) -> None:
        """Validate `task_data` against TASK_DATA_SCHEMA and store it in `data`.

        The keys reserved for every task (`environment`, `network`,
        `limits`: `taskyard.tasks.run_options`) are checked apart and kept in
        `run_options`, not in `data`. Raises TaskConfigError listing every
        violation; `data` is then left as it was. Overrides call
        `super().configure(task_data)` and must not touch worker resources:
        this also runs on the scheduler.
        """
        if not isinstance(task_data, dict):
            raise TaskConfigError(
                self.name,
                [FieldViolation("$", f"task data must be a JSON object, not {task_data!r}")],
            )
        own, reserved = run_options.split(task_data)
        found = list(violations(run_options.VALIDATOR, reserved))
        found += violations(self._current_validator(), own)
        if found:
            raise TaskConfigError(self.name, found)
        self.data = copy.deepcopy(own)
        self.run_options = RunOptions.of(reserved)

    @classmethod
    def _current_validator(cls) -> Draft202012Validator:
        """Return the compiled schema, recompiling if TASK_DATA_SCHEMA was reassigned."""
        if cls._validator.schema is not cls.TASK_DATA_SCHEMA:
            cls._validator = compile_schema(cls.TASK_DATA_SCHEMA)
        return cls._validator

    def configure_server_access(self, access: ServerAccess) -> None:
        """Set the object through which the running task reaches the scheduler."""
        self.server_access = access

    def configure_sandbox(self, sandbox: Sandbox) -> None:
        """Set where the task's programs run and its working directory (the
        worker sets the attempt's sandbox; without one, programs run as
        plain processes in a temporary directory)."""
        self.sandbox = sandbox

    # -- How it ended, and its output as it goes --------------------------

    def report(self, reason: str | None = None, message: str = "", **details: Any) -> None:
        """Say how the task ended, alongside the bool `_execute()` returns.

        `details` (JSON values) become the work request's `details`, e.g.
        `exit_code=3`; `reason` (kebab-case, e.g. `exit-code`) and `message`
        say why a failure failed. The last call wins for each key.
        """
        self.result_details.update(details)
        if reason is not None:
            self.result_reason = reason
        if message:
            self.result_message = message

    def configure_output(self, sink: Callable[[str, bytes], None]) -> None:
        """Set where `emit_output()` sends the task's live output (the worker
        streams it to the scheduler)."""
        self._output = sink

    def emit_output(self, stream: str, data: bytes) -> None:
        """Send output as it is produced: `stream` is `stdout`, `stderr` or
        `log`. Without a sink (run locally, or on the scheduler) it goes nowhere."""
        if self._output is not None and data:
            self._output(stream, data)

    # -- Abort ------------------------------------------------------------

    def abort(self) -> None:
        """Mark the task as not needing to run. It cannot be undone.

        Safe to call from another thread while the task runs; long-running
        tasks check `aborted` or wait with `wait_for_abort()`; a program
        started with `run_program()` is stopped.
        """
        self._aborted.set()
        with self._wakeups_lock:
            for wakeup in self._abort_wakeups:
                os.write(wakeup, b"x")

    def wake_on_abort(self, fd: int, wake: bool = True) -> None:
        """Have `abort()` write to the pipe `fd` (until called with `wake`
        false): how a wait on something else also ends on abort."""
        with self._wakeups_lock:
            if wake:
                self._abort_wakeups.add(fd)
                if self.aborted:
                    os.write(fd, b"x")
            else:
                self._abort_wakeups.discard(fd)

    @property
    def aborted(self) -> bool:
        """Return whether the task was aborted (once True, always True)."""
        return self._aborted.is_set()

    def wait_for_abort(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking at once on abort; return `aborted`."""
        return self._aborted.wait(timeout)

    # -- Files and programs: the task author's kit ------------------------

    @property
    def work_dir(self) -> Path:
        """The attempt's working directory: where programs run (`/work` in
        the sandbox), where inputs are (`inputs/`), and where outputs go.
        Fresh for each attempt; removed after it."""
        if self.sandbox is None:
            self._own_work_dir = tempfile.TemporaryDirectory(prefix=f"taskyard-{self.name}-")
            self.configure_sandbox(PlainProcesses(Path(self._own_work_dir.name)))
        assert self.sandbox is not None
        return self.sandbox.work_dir

    @property
    def inputs_dir(self) -> Path:
        """Where the files of the task data's `inputs` are (`inputs/` in the
        working directory), put there, digest-checked, before `execute()`."""
        return self.work_dir / "inputs"

    def run_program(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ProgramResult:
        """Run a program in the task's sandbox, in the working directory, to
        its end (see `taskyard.tasks.programs`): its output goes live to the
        request's log and to the `stdout.txt` and `stderr.txt` debug logs;
        `abort()` and `timeout` (seconds) stop it."""
        self.work_dir  # noqa: B018 - makes the temporary sandbox when there is none
        assert self.sandbox is not None
        return programs.run(self, self.sandbox, argv, env or {}, timeout)

    def upload_artifact(
        self,
        category: str,
        files: Mapping[str, Path],
        data: Mapping[str, Any] | None = None,
    ) -> str:
        """Upload `files` (path in the artifact -> local file) as one
        artifact of this work request; return its id. A file in the working
        directory is read without following links (UnsafeOutputError
        otherwise: a program in the sandbox made it)."""
        if self.server_access is None:
            raise UnavailableError(f"{self.name} has no way to the scheduler here")
        checked = {name: self._uploadable(path) for name, path in files.items()}
        return self.server_access.upload_artifact(
            category, checked, work_request_id=self.work_request_id, data=data
        )

    def _uploadable(self, path: Path) -> Path:
        if self.sandbox is None or not path.is_relative_to(self.work_dir):
            return path  # the task's own file (a debug log, say)
        found = output_file(self.work_dir, path.relative_to(self.work_dir).as_posix())
        if found is None:
            raise UnsafeOutputError(f"{path.relative_to(self.work_dir)} does not exist")
        return found

    # -- Debug logs -------------------------------------------------------

    def create_debug_log_file(self, filename: str, *, mode: str = "w") -> IO[Any]:
        """Create a debug log file, open it with `mode` and return it.

        Text modes write UTF-8. The file lives in a per-task temporary directory
        and is uploaded by `execute()`. The caller must `.close()` it.
        """
        if mode not in _WRITE_MODES:
            raise ValueError(f"mode must be one of {sorted(_WRITE_MODES)}, not {mode!r}")
        if not filename or filename in {".", ".."} or any(c in filename for c in "/\\\0"):
            raise ValueError(f"debug log file name must be a plain file name, not {filename!r}")
        if self._debug_log_dir is None:
            self._debug_log_dir = Path(tempfile.mkdtemp(prefix=f"taskyard-{self.name}-logs-"))
        path = self._debug_log_dir / filename
        file: IO[Any] = open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8")  # noqa: SIM115
        self._debug_log_files[filename] = file
        return file

    # -- Execution --------------------------------------------------------

    @abstractmethod
    def _execute(self) -> bool:
        """Do the task's work; return True on success, False on failure."""

    def execute(self) -> bool:
        """Call `_execute()`, then upload the debug log files; return its result.

        The debug logs are uploaded also when `_execute()` raised, and the
        exception is then re-raised.
        """
        try:
            try:
                result = self._execute()
            except Exception:
                try:
                    self._upload_debug_logs()
                except Exception:
                    self.logger.exception("could not upload the debug logs of %s", self.name)
                raise
            self._upload_debug_logs()
            return result
        finally:
            if self._own_work_dir is not None:
                self._own_work_dir.cleanup()

    def execute_logging_exceptions(self) -> bool:
        """Run `execute()`; log any exception with its traceback and return False."""
        try:
            return self.execute()
        except Exception:
            self.logger.exception("task %s failed with an exception", self.name)
            return False

    def _upload_debug_logs(self) -> None:
        """Upload the debug log files as one artifact, or leave them and say where."""
        if self._debug_log_dir is None or not self._debug_log_files:
            return
        for file in self._debug_log_files.values():
            file.close()
        if self.server_access is None:
            self.logger.info("debug logs of %s kept in %s", self.name, self._debug_log_dir)
            return
        files = {name: self._debug_log_dir / name for name in sorted(self._debug_log_files)}
        artifact_id = self.upload_artifact(DEBUG_LOGS_CATEGORY, files)
        self.logger.info("debug logs of %s uploaded as artifact %s", self.name, artifact_id)
        shutil.rmtree(self._debug_log_dir, ignore_errors=True)
        self._debug_log_dir = None
        self._debug_log_files = {}
