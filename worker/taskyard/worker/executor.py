"""The executor process: runs one task at a time, isolated from the worker.

Started once per slot and reused. It talks to the worker over two pipes
(`taskyard.worker.pipe`): it gets assignments, aborts and the answers to its
uploads, and sends upload requests (the task's server access: the worker
uploads through its own connection), the task's live output, and how each
task ended.

The pipe is the back-pressure: a worker that does not read holds up the
task's output, and so the task's program, not this process's memory.

The task runs in a thread so that this process's main thread stays free to
receive an abort and call `task.abort()` at once. The worker puts the process
in its own process group, so that stopping the group stops the task's children.

A task never outlives its worker: when the commands pipe reaches its end
(the worker is gone, SIGKILL included: the kernel closes its end) or SIGTERM
arrives, the executor kills at once every process group the task's programs
lead (`taskyard.tasks.process_groups`) and its own group, itself included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from taskyard.errors import TaskyardError, UnavailableError
from taskyard.lifetime import become_subreaper
from taskyard.logs import configure_logging
from taskyard.tasks import ServerAccess, Task, TaskConfigError, UnknownTaskError, process_groups
from taskyard.tasks.loading import load_tasks
from taskyard.telemetry import Telemetry, configure, context_from, current_trace_context
from taskyard.worker.pipe import (
    Abort,
    Done,
    FromExecutor,
    Job,
    Output,
    Report,
    Run,
    Upload,
    Uploaded,
    UploadFailed,
    decode,
    encode,
)
from taskyard.worker.sandbox import for_attempt as sandbox_for
from taskyard.worker.sandbox.settings import SandboxSettings

log = logging.getLogger("taskyard.worker.executor")
tracer = trace.get_tracer("taskyard.worker.executor")


class PipeServerAccess:
    """ServerAccess for tasks in the executor: asks the worker to upload."""

    def __init__(self, out: IO[bytes], lock: threading.Lock) -> None:
        self._out = out
        self._lock = lock
        self._answered = threading.Event()
        self._answer: Uploaded | UploadFailed = UploadFailed("no answer")

    def upload_artifact(
        self,
        category: str,
        files: Mapping[str, Path],
        *,
        work_request_id: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        self._answered.clear()
        request = Upload(
            category,
            {name: str(path) for name, path in files.items()},
            dict(data or {}),
            work_request_id or "",
            current_trace_context(),
        )
        _send(self._out, self._lock, request)
        self._answered.wait()
        if isinstance(self._answer, UploadFailed):
            raise UnavailableError(self._answer.message, reason="UPLOAD_FAILED")
        return self._answer.artifact_id

    def answer(self, message: Uploaded | UploadFailed) -> None:
        """The worker's reply to the pending upload."""
        self._answer = message
        self._answered.set()


def _error(reason: str, error: BaseException) -> dict[str, str]:
    return {"reason": reason, "type": type(error).__name__, "message": str(error)}


def run_assignment(
    job: Job,
    running: dict[str, Task],
    settings: SandboxSettings,
    access: ServerAccess | None = None,
    output: Callable[[str, bytes], None] | None = None,
) -> Report:
    """Run the assignment in a span of its work request's trace; return the report."""
    attributes: dict[str, str | int] = {
        "taskyard.work_request.id": job.work_request_id,
        "taskyard.task": job.task_name,
        "taskyard.attempt": job.attempt,
    }
    with tracer.start_as_current_span(
        "taskyard.run",
        context=context_from(job.trace_context),
        attributes=attributes,
    ) as span:
        report = _run(job, running, settings, access, output)
        span.set_attribute("taskyard.result", report.outcome)
        if "task" in running:
            span.set_attribute("taskyard.task.version", running["task"].TASK_VERSION or 0)
        if report.error:
            span.set_status(Status(StatusCode.ERROR, report.error["message"]))
        return report


def _run(
    job: Job,
    running: dict[str, Task],
    settings: SandboxSettings,
    access: ServerAccess | None,
    output: Callable[[str, bytes], None] | None,
) -> Report:
    """Configure and execute the task of an assignment in the attempt's
    sandbox; return the report."""
    try:
        task = Task.class_from_name(job.task_name)()
    except UnknownTaskError as error:
        return Report("error", _error("unknown-task", error))
    task.work_request_id = job.work_request_id
    if access is not None:
        task.configure_server_access(access)
    if output is not None:
        task.configure_output(output)
    try:
        task.configure(json.loads(job.task_data_json or "{}"))
    except (TaskConfigError, ValueError) as error:
        return Report("error", _error("configure-failed", error))
    sandbox = sandbox_for(
        settings,
        task.run_options,
        Path(job.work_dir),
        f"{job.work_request_id}.{job.attempt}",
        Path(job.environment_root) if job.environment_root else None,
    )
    task.configure_sandbox(sandbox)
    running["task"] = task
    caught = _LoggedException()
    lines = _OutputLines(task)
    task.logger.addHandler(caught)
    task.logger.addHandler(lines)
    try:
        succeeded = task.execute_logging_exceptions()
    finally:
        task.logger.removeHandler(caught)
        task.logger.removeHandler(lines)
        sandbox.close()
    details = task.result_details
    raised = caught.error
    if raised is not None:
        reason = (
            raised.reason.lower().replace("_", "-")
            if isinstance(raised, TaskyardError)
            else "task-raised"
        )
        return Report("error", _error(reason, raised), details=details)
    if task.aborted:
        return Report("aborted", details=details)
    if succeeded:
        return Report("success", details=details)
    reason = task.result_reason or "task-failed"
    message = task.result_message or f"{task.name} returned False"
    return Report("failure", {"reason": reason, "type": "", "message": message}, details=details)


class _OutputLines(logging.Handler):
    """The task's log lines, sent live as its `log` stream."""

    def __init__(self, task: Task) -> None:
        super().__init__(logging.INFO)
        self._task = task
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self._task.emit_output("log", (self.format(record) + "\n").encode())


class _LoggedException(logging.Handler):
    """Keeps the exception `execute_logging_exceptions()` logged, to report it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.error = record.exc_info[1]


def _send(out: IO[bytes], lock: threading.Lock, message: FromExecutor) -> None:
    with lock, contextlib.suppress(BrokenPipeError):  # the worker is gone: so are we, soon
        out.write(encode(message))
        out.flush()


def serve(
    commands: IO[bytes],
    out: IO[bytes],
    telemetry: Telemetry,
    settings: SandboxSettings,
    linger: float = 1.0,
) -> None:
    """Read commands until the worker closes the pipe; then give a running
    task up to `linger` seconds."""
    lock = threading.Lock()
    running: dict[str, Task] = {}
    worker_thread: threading.Thread | None = None
    access = PipeServerAccess(out, lock)

    def output(stream: str, data: bytes) -> None:
        _send(out, lock, Output(stream, data))

    def execute(job: Job) -> None:
        report = run_assignment(job, running, settings, access, output)
        running.clear()
        telemetry.flush()  # the run span leaves before the worker reports
        _send(out, lock, Done(report))

    for line in commands:
        command = decode(line)
        if isinstance(command, Run):
            worker_thread = threading.Thread(target=execute, args=(command.job,), daemon=True)
            worker_thread.start()
        elif isinstance(command, Abort) and "task" in running:
            task = running["task"]
            task.abort_grace = command.grace
            task.abort()
        elif isinstance(command, Uploaded | UploadFailed):
            access.answer(command)
    if worker_thread is not None:
        worker_thread.join(timeout=linger)


def stop_everything(*_: object) -> None:
    """Kill what the task started and this executor's whole group, at once."""
    process_groups.kill_all()
    os.killpg(0, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description="Taskyard executor (started by the worker)")
    parser.add_argument("--commands-fd", type=int, required=True)
    parser.add_argument("--reports-fd", type=int, required=True)
    parser.add_argument("--sandbox", type=SandboxSettings.from_json, default=SandboxSettings())
    args = parser.parse_args()
    configure_logging(logging.INFO, os.environ.get("TASKYARD_LOG_FORMAT", "text"))
    signal.signal(signal.SIGTERM, stop_everything)  # a handler: children get SIG_DFL back
    become_subreaper()  # what the task's processes orphan stays ours to see
    load_tasks()  # the worker has said what did not load
    telemetry = configure("taskyard-worker")
    with open(args.commands_fd, "rb") as commands, open(args.reports_fd, "wb") as out:
        serve(commands, out, telemetry, args.sandbox, linger=0)
    # The worker closed the pipe: it stopped, or it died.
    with contextlib.suppress(Exception):
        telemetry.shutdown()
    stop_everything()


if __name__ == "__main__":
    main()
