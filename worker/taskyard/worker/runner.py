"""The task runner port: slots, each with a warm executor process.

A task runs in its slot's executor, never in the worker, so a hung or
crashing task cannot take the connection down. An abort reaches the task at
once (`task.abort()`, with the grace it has to stop its processes); a task
still running when the grace is over has its executor stopped with every
process it started (the executor kills the process groups of the task's
programs), and the slot gets a fresh executor: from the abort to the last
process gone takes at most the grace and a second. Aborts are bound to a
lease (request, attempt): a late one never touches the slot's next job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from taskyard.worker.attempts import Attempts, Unprepared
from taskyard.worker.files import remove_tree
from taskyard.worker.pipe import (
    Abort,
    Done,
    Job,
    Output,
    Report,
    Run,
    ToExecutor,
    Upload,
    Uploaded,
    UploadFailed,
    decode,
    encode,
)
from taskyard.worker.processes import live_children, stop_group
from taskyard.worker.sandbox.settings import PROCESS, SandboxSettings

log = logging.getLogger(__name__)

#: What a task may take past its grace to report that it stopped.
TASK_MARGIN = 0.3
#: Seconds an executor gets from SIGTERM (on which it kills what its task
#: started) to SIGKILL.
KILL_GRACE = 0.5


#: Uploads an artifact for a job: (job, the executor's request) -> artifact id.
Uploader = Callable[[Job, Upload], Awaitable[str]]
#: Takes a job's live output: (job, stream, data).
OutputSink = Callable[[Job, str, bytes], None]


class Executor:
    """One warm executor process and the pipes to it.

    With a scratch directory, the executor's temporary files go there (TMPDIR)
    and are removed with the executor, also when it had to be killed.
    """

    def __init__(self, settings: SandboxSettings, scratch: Path | None = None) -> None:
        self.settings = settings
        self.scratch = scratch
        self.process: asyncio.subprocess.Process | None = None
        self._commands: int = -1
        self._reports: asyncio.StreamReader | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        env = dict(os.environ)
        if self.scratch is not None:
            self.scratch.mkdir(parents=True, exist_ok=True)
            env["TMPDIR"] = str(self.scratch)
        commands_read, self._commands = os.pipe()
        reports_read, reports_write = os.pipe()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskyard.worker.executor",
            "--commands-fd", str(commands_read), "--reports-fd", str(reports_write),
            "--sandbox", self.settings.to_json(),
            pass_fds=(commands_read, reports_write),
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )  # fmt: skip
        os.close(commands_read)
        os.close(reports_write)
        loop = asyncio.get_running_loop()
        self._reports = asyncio.StreamReader(limit=4 * 1024 * 1024)  # base64 output lines
        protocol = asyncio.StreamReaderProtocol(self._reports)
        await loop.connect_read_pipe(lambda: protocol, os.fdopen(reports_read, "rb"))

    def send(self, command: ToExecutor) -> None:
        """Write one command; a dead executor is noticed by `run()`."""
        try:
            os.write(self._commands, encode(command))
        except (BrokenPipeError, OSError):
            log.warning("executor %s is gone", self.pid)

    async def run(
        self, job: Job, uploader: Uploader | None, output: OutputSink | None = None
    ) -> Report | None:
        """Run a job, serving its uploads and passing on its output; None if
        the executor died before reporting."""
        assert self._reports is not None
        self.send(Run(job))
        while line := await self._reports.readline():
            message = decode(line)
            if isinstance(message, Output):
                if output is not None:
                    output(job, message.stream, message.data)
            elif isinstance(message, Done):
                return message.report
            elif isinstance(message, Upload):
                self.send(await self._upload(job, message, uploader))
        return None

    async def _upload(
        self, job: Job, request: Upload, uploader: Uploader | None
    ) -> Uploaded | UploadFailed:
        if uploader is None:
            return UploadFailed("this worker cannot upload artifacts")
        try:
            artifact_id = await uploader(job, request)
        except Exception as error:  # reported to the task, which logs it
            log.warning("upload for %s failed: %s", job.work_request_id, error)
            return UploadFailed(str(error))
        return Uploaded(artifact_id)

    def strays(self) -> list[int]:
        """Processes the executor's task left behind (its children, and, the
        executor being a child subreaper, their orphans)."""
        return live_children(self.pid)

    async def stop(self, grace: float) -> None:
        """Stop the executor and everything in its process group."""
        os.close(self._commands)
        if self.process is not None:
            await stop_group(self.pid, grace)
            await self.process.wait()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclass
class Slot:
    """A slot: an executor and the job it runs, if any."""

    executor: Executor
    job: Job | None = None
    aborting: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class TaskRunner:
    """Runs jobs on `slots` warm executors; aborts them on request."""

    def __init__(
        self,
        slots: int,
        abort_grace: float = 10.0,
        uploader: Uploader | None = None,
        scratch: Path | None = None,
        settings: SandboxSettings | None = None,
    ) -> None:
        self._scratch = scratch
        self.settings = settings or SandboxSettings(executor=PROCESS)
        self._slots = [Slot(Executor(self.settings, self._scratch_of(n))) for n in range(slots)]
        #: Each attempt's working directory is made here, and removed after it.
        self._work_root = (scratch / "work" if scratch else Path(tempfile.mkdtemp())).resolve()
        self.uploader = uploader
        #: Each attempt's files: its working directory, inputs, environment.
        self.attempts = Attempts(self._work_root, self.settings.sandboxed)
        self.output: OutputSink | None = None
        self.abort_grace = abort_grace

    async def start(self) -> None:
        """Start every executor (once: they are reused)."""
        if self._work_root.exists():  # attempts of an earlier run: their tasks died with it
            await asyncio.to_thread(remove_tree, self._work_root)
        self._work_root.mkdir(parents=True)
        for slot in self._slots:
            await slot.executor.start()

    def running(self) -> list[Job]:
        """The jobs running now."""
        return [slot.job for slot in self._slots if slot.job is not None]

    @property
    def slot_count(self) -> int:
        return len(self._slots)

    async def run(self, job: Job) -> Report:
        """Run `job` on a free slot and return how it ended."""
        slot = next(s for s in self._slots if s.job is None)
        slot.job, slot.aborting = job, False
        slot.finished.clear()
        try:
            async with self.attempts.prepared(job) as ready:
                if slot.aborting:  # while its files were fetched
                    return Report("aborted")
                slot.job = ready
                report = await slot.executor.run(ready, self.uploader, self.output)
                if report is None or slot.aborting:
                    report = self._aborted_or_lost(slot, report)
                if report is None or slot.executor.strays():
                    await self._replace_executor(slot)
                return report
        except Unprepared as unprepared:
            return Report("error", unprepared.report)
        except Exception as error:  # a bug of ours: the attempt still ends, and says so
            log.exception("running %s failed", job.work_request_id)
            kind = type(error).__name__
            return Report("error", {"reason": "worker-failed", "type": kind, "message": str(error)})
        finally:
            slot.job = None
            slot.finished.set()

    def _aborted_or_lost(self, slot: Slot, report: Report | None) -> Report:
        if slot.aborting:
            if report is not None and report.outcome in {"success", "failure"}:
                return report  # it finished before the abort reached it
            return Report("aborted")
        error = {"reason": "executor-died", "type": "", "message": "the executor process died"}
        return Report("error", error)

    def _scratch_of(self, number: int) -> Path | None:
        return self._scratch / f"slot-{number}" if self._scratch else None

    async def _replace_executor(self, slot: Slot) -> None:
        scratch = slot.executor.scratch
        await slot.executor.stop(KILL_GRACE)
        slot.executor = Executor(self.settings, scratch)
        await slot.executor.start()

    def _slot_of(self, work_request_id: str, attempt: int) -> Slot | None:
        for slot in self._slots:
            job = slot.job
            if job and (job.work_request_id, job.attempt) == (work_request_id, attempt):
                return slot
        return None

    def holds(self, work_request_id: str, attempt: int) -> bool:
        """Whether this attempt of the request runs here now."""
        return self._slot_of(work_request_id, attempt) is not None

    async def abort(self, work_request_id: str, attempt: int) -> None:
        """Stop the job of this lease: ask the task (which has the grace to
        stop its programs), then stop its executor with everything it
        started. Nothing happens when the lease does not run here (any more)."""
        slot = self._slot_of(work_request_id, attempt)
        if slot is None or slot.aborting:
            return
        job, executor = slot.job, slot.executor
        slot.aborting = True
        executor.send(Abort(self.abort_grace))
        try:
            await asyncio.wait_for(slot.finished.wait(), self.abort_grace + TASK_MARGIN)
        except TimeoutError:
            if slot.job is job and slot.executor is executor:
                log.warning("task of %s ignored the abort; stopping its processes", job)
                await stop_group(executor.pid, KILL_GRACE)

    async def stop(self) -> None:
        """Stop every executor; remove what their attempts left."""
        for slot in self._slots:
            await slot.executor.stop(KILL_GRACE)
        await asyncio.to_thread(remove_tree, self._work_root)
