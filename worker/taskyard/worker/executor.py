"""The executor process: runs one task at a time, isolated from the worker.

Started once per slot and reused. It talks to the worker over two pipes, one
JSON object per line (the task's own stdout and stderr are left alone):

- worker -> executor: `{"op": "run", ...assignment, "work_dir": ..., "environment_root": ...}`,
  `{"op": "abort"}`,
  `{"op": "uploaded", "artifact_id": ...}` or `{"op": "upload-failed", ...}`
- executor -> worker: `{"op": "upload", "category": ..., "files": {...}}` (the
  task's server access: the worker uploads through its own connection),
  `{"op": "output", "stream": ..., "data": <base64>}` (the task's live output:
  its program's stdout and stderr, its logger's lines), and
  `{"op": "done", "outcome": ..., "error": ..., "output_json": ..., "details": {...}}`

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
from base64 import b64encode
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
from taskyard.worker.sandbox import for_attempt as sandbox_for
from taskyard.worker.sandbox.settings import SandboxSettings

log = logging.getLogger("taskyard.worker.executor")
tracer = trace.get_tracer("taskyard.worker.executor")


class PipeServerAccess:
    """ServerAccess for tasks in the executor: asks the worker to upload."""

    def __init__(self, out: IO[str], lock: threading.Lock) -> None:
        self._out = out
        self._lock = lock
        self._answered = threading.Event()
        self._answer: dict[str, Any] = {}

    def upload_artifact(
        self,
        category: str,
        files: Mapping[str, Path],
        *,
        work_request_id: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        self._answered.clear()
        _send(self._out, self._lock, {
            "op": "upload", "category": category, "data": dict(data or {}),
            "files": {name: str(path) for name, path in files.items()},
            "work_request_id": work_request_id or "",
            "trace_context": current_trace_context(),
        })  # fmt: skip
        self._answered.wait()
        if self._answer["op"] != "uploaded":
            raise UnavailableError(
                self._answer.get("message", "upload failed"), reason="UPLOAD_FAILED"
            )
        return str(self._answer["artifact_id"])

    def answer(self, message: dict[str, Any]) -> None:
        """The worker's reply to the pending upload."""
        self._answer = message
        self._answered.set()


def _error(reason: str, error: BaseException) -> dict[str, Any]:
    return {"reason": reason, "type": type(error).__name__, "message": str(error)}


def run_assignment(
    command: dict[str, Any],
    running: dict[str, Task],
    settings: SandboxSettings,
    access: ServerAccess | None = None,
    output: Callable[[str, bytes], None] | None = None,
) -> dict[str, Any]:
    """Run the assignment in a span of its work request's trace; return the report."""
    attributes = {
        "taskyard.work_request.id": command["work_request_id"],
        "taskyard.task": command["task_name"],
        "taskyard.attempt": command["attempt"],
    }
    with tracer.start_as_current_span(
        "taskyard.run",
        context=context_from(command.get("trace_context", {})),
        attributes=attributes,
    ) as span:
        report = _run(command, running, settings, access, output)
        span.set_attribute("taskyard.result", report["outcome"])
        if "task" in running:
            span.set_attribute("taskyard.task.version", running["task"].TASK_VERSION or 0)
        if report.get("error"):
            span.set_status(Status(StatusCode.ERROR, report["error"]["message"]))
        return report


def _run(
    command: dict[str, Any],
    running: dict[str, Task],
    settings: SandboxSettings,
    access: ServerAccess | None,
    output: Callable[[str, bytes], None] | None,
) -> dict[str, Any]:
    """Configure and execute the task of an assignment in the attempt's
    sandbox; return the report."""
    try:
        task = Task.class_from_name(command["task_name"])()
    except UnknownTaskError as error:
        return {"outcome": "error", "error": _error("unknown-task", error)}
    task.work_request_id = command["work_request_id"]
    if access is not None:
        task.configure_server_access(access)
    if output is not None:
        task.configure_output(output)
    try:
        task.configure(json.loads(command["task_data_json"] or "{}"))
    except (TaskConfigError, ValueError) as error:
        return {"outcome": "error", "error": _error("configure-failed", error)}
    sandbox = sandbox_for(
        settings,
        task.run_options,
        Path(command["work_dir"]),
        f"{command['work_request_id']}.{command['attempt']}",
        Path(command["environment_root"]) if command.get("environment_root") else None,
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
    report: dict[str, Any] = {"details": task.result_details}
    raised = caught.error
    if raised is not None:
        reason = (
            raised.reason.lower().replace("_", "-")
            if isinstance(raised, TaskyardError)
            else "task-raised"
        )
        return {**report, "outcome": "error", "error": _error(reason, raised)}
    if task.aborted:
        return {**report, "outcome": "aborted"}
    if succeeded:
        return {**report, "outcome": "success"}
    reason = task.result_reason or "task-failed"
    message = task.result_message or f"{task.name} returned False"
    failed = {"reason": reason, "type": "", "message": message}
    return {**report, "outcome": "failure", "error": failed}


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


def _send(out: IO[str], lock: threading.Lock, message: dict[str, Any]) -> None:
    with lock, contextlib.suppress(BrokenPipeError):  # the worker is gone: so are we, soon
        out.write(json.dumps(message) + "\n")
        out.flush()


def serve(
    commands: IO[str],
    out: IO[str],
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
        _send(out, lock, {"op": "output", "stream": stream, "data": b64encode(data).decode()})

    def execute(command: dict[str, Any]) -> None:
        report = run_assignment(command, running, settings, access, output)
        running.clear()
        telemetry.flush()  # the run span leaves before the worker reports
        _send(out, lock, {"op": "done", **report})

    for line in commands:
        command = json.loads(line)
        if command["op"] == "run":
            worker_thread = threading.Thread(target=execute, args=(command,), daemon=True)
            worker_thread.start()
        elif command["op"] == "abort" and "task" in running:
            task = running["task"]
            task.abort_grace = float(command.get("grace", task.abort_grace))
            task.abort()
        elif command["op"] in {"uploaded", "upload-failed"}:
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
    with (
        open(args.commands_fd, encoding="utf-8") as commands,
        open(args.reports_fd, "w", encoding="utf-8") as out,
    ):
        serve(commands, out, telemetry, args.sandbox, linger=0)
    # The worker closed the pipe: it stopped, or it died.
    with contextlib.suppress(Exception):
        telemetry.shutdown()
    stop_everything()


if __name__ == "__main__":
    main()
