"""The worker agent: the connection loop and what it does with each message.

It registers, opens one session at a time and keeps reopening it, whatever
went wrong (`reconnect.py`): it never gives up by itself. Jobs outlive
sessions: a job that finishes
while the scheduler is away goes to the outbox on disk and is delivered after
the next hello. On stop it takes no more work, lets running jobs finish up to
the drain timeout (then aborts them), delivers what it can and returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace

from taskyard.errors import UnavailableError
from taskyard.protocol import PROTOCOL_VERSION
from taskyard.rpc.batching import batches
from taskyard.telemetry import context_from
from taskyard.v1 import common_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as wr_pb2
from taskyard.worker.client import SchedulerPort
from taskyard.worker.config import WorkerConfig
from taskyard.worker.metadata import worker_metadata
from taskyard.worker.outbox import Outbox, Result
from taskyard.worker.output import OutputPump
from taskyard.worker.pipe import Job, Upload
from taskyard.worker.reconnect import Reconnect
from taskyard.worker.runner import TaskRunner
from taskyard.worker.sandbox.environments import Environments

log = logging.getLogger(__name__)
tracer = trace.get_tracer("taskyard.worker")

OUTCOMES = {
    "success": workers_pb2.WORK_OUTCOME_SUCCESS,
    "failure": workers_pb2.WORK_OUTCOME_FAILURE,
    "error": workers_pb2.WORK_OUTCOME_ERROR,
    "aborted": workers_pb2.WORK_OUTCOME_ABORTED,
}


MB = 1024 * 1024
#: Seconds between looks at whether the worker's metadata changed.
METADATA_EVERY = 300.0

#: Why a job is given up before it started.
ABORTED, STOPPING = "aborted", "the worker is stopping"
#: Seconds past a job's timeout after which the worker stops it by itself.
#: The scheduler times it out first, from the start it recorded a moment
#: after the job's (and so says `timeout`); this is for a scheduler away.
TIMEOUT_BACKSTOP = 2.0
#: Seconds a job's start waits to be reported with its end (`StartReport`).
START_REPORT_DELAY = 0.01

#: Stands in the queue for the reports gathered since it was queued.
_REPORTS = workers_pb2.SessionRequest()


@dataclass
class Link:
    """The open session, if any: where outgoing messages go. Reports ready
    together leave in one message."""

    queue: asyncio.Queue[workers_pb2.SessionRequest | None] = field(default_factory=asyncio.Queue)
    open: bool = False
    _reports: list[workers_pb2.WorkReport] = field(default_factory=list)

    def send(self, **message: Any) -> None:
        if self.open:
            self.queue.put_nowait(workers_pb2.SessionRequest(**message))

    def report(self, **report: Any) -> None:
        if self.open:
            if not self._reports:
                self.queue.put_nowait(_REPORTS)
            self._reports.append(workers_pb2.WorkReport(**report))

    def close(self) -> None:
        self.open = False
        self.queue.put_nowait(None)

    async def outgoing(self) -> AsyncIterator[workers_pb2.SessionRequest]:
        """The messages to send, until the link closes."""
        while (message := await self.queue.get()) is not None:
            if message is not _REPORTS:
                yield message
                continue
            ready, self._reports = self._reports, []
            for part in batches(ready):
                yield workers_pb2.SessionRequest(reports=workers_pb2.WorkReports(reports=part))


class StartReport:
    """A job's start, reported START_REPORT_DELAY after it, or with its end
    if that comes first: a short task then costs the scheduler one report
    and one commit, not two. (The lease is held from the assignment on:
    the delay changes only when the request is seen running.)"""

    def __init__(self, report: Callable[..., None], lease: common_pb2.Lease) -> None:
        self._report = report  # through the link open when it is due
        self._lease = lease
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            START_REPORT_DELAY, self.now
        )

    def now(self) -> None:
        """Report the start now, unless it was reported already."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._report(started=workers_pb2.WorkStarted(lease=self._lease))


class Agent:
    """Turns a machine into capacity for the scheduler."""

    def __init__(
        self,
        config: WorkerConfig,
        client: SchedulerPort,
        runner: TaskRunner,
        outbox: Outbox,
    ) -> None:
        self.config = config
        self.client = client
        self.runner = runner
        self.outbox = outbox
        self.name = config.name
        runner.uploader = self.upload
        runner.attempts.fetch = self.download
        runner.attempts.environments = Environments(
            config.data_dir / "environments", config.environment_cache_mb * MB, self.download
        )
        self.output = OutputPump(config.data_dir / "output")
        runner.output = lambda job, stream, data: self.output.output(
            (job.work_request_id, job.attempt), stream, data
        )
        self.draining = False
        self._link = Link()
        #: Every job accepted and not yet ended, by (request, attempt): each
        #: holds a slot, or will as soon as its task runs.
        self._jobs: dict[tuple[str, int], asyncio.Task[None]] = {}
        #: Slots to start on: a job past them (prefetched) waits its turn.
        self._free = asyncio.Semaphore(runner.slot_count)
        #: Jobs waiting for a slot, and why one was given up while it waited.
        self._queued: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._given_up: dict[tuple[str, int], str] = {}
        self._metadata: dict[str, Any] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def _spawn(self, coroutine: Any) -> None:
        """Run a side job, keeping a reference until it ends."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- Lifecycle --------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain."""
        await self.runner.start()
        pumping = asyncio.create_task(self.output.run())
        self._spawn(self._metadata_now_and_then())
        serving = asyncio.create_task(self._serve())
        await stop.wait()
        await self._drain()
        serving.cancel()
        pumping.cancel()
        await asyncio.gather(serving, pumping, return_exceptions=True)
        await self.runner.stop()

    async def _serve(self) -> None:
        """Register, then keep a session open for good. Each welcomed session
        that ends starts a fresh run of retries: the backoff resets."""
        reconnect = Reconnect(self.config.scheduler, self.config.max_backoff)
        await reconnect.run(self._register)
        while True:
            await reconnect.run(self._session)

    async def _register(self) -> None:
        await self.client.wait_reachable()
        activation = ""
        if self.config.activation_token_file:
            with open(self.config.activation_token_file, encoding="utf-8") as file:
                activation = file.read().strip()
        self.name, enabled = await self.client.register(self.config.name, activation)
        log.info("registered as %s (%s)", self.name, "enabled" if enabled else "disabled")

    async def _drain(self) -> None:
        self.draining = True
        for key in list(self._queued):
            self._give_up(key, STOPPING)
        self._link.send(draining=workers_pb2.Draining())
        if self._jobs:
            log.info("stopping: letting %d task(s) finish", len(self._jobs))
            _, late = await asyncio.wait(
                list(self._jobs.values()), timeout=self.config.drain_timeout
            )
            for job in self.runner.running():
                await self.runner.abort(job.work_request_id, job.attempt)
            await asyncio.gather(*late, return_exceptions=True)
        if self._link.open and self.outbox.pending():
            await asyncio.sleep(0.5)  # let the last reports go out and be acknowledged

    # -- The session ------------------------------------------------------

    async def _session(self) -> None:
        """One session; returns once a welcomed session has ended, raises if
        the scheduler could not be reached or refused it."""
        await self.client.wait_reachable()
        self._link = link = Link()
        link.open = True
        held = [common_pb2.Lease(work_request_id=i, attempt=a) for i, a in self._jobs]
        held += [common_pb2.Lease(work_request_id=r.work_request_id, attempt=r.attempt)
                 for r in self.outbox.pending()]  # fmt: skip
        self._metadata = await asyncio.to_thread(
            worker_metadata, self.config.slots, self.runner.settings.metadata()
        )
        hello = workers_pb2.WorkerHello(
            protocol_version=PROTOCOL_VERSION,
            metadata_json=json.dumps(self._metadata),
            slots=self.config.slots,
            prefetch=self.config.prefetch,
            running=held,
            taskyard_version=str(self._metadata.get("system:taskyard_version", "")),
        )
        link.send(hello=hello)
        if self.draining:
            link.send(draining=workers_pb2.Draining())
        heartbeat: asyncio.Task[None] | None = None
        pause = 0.0
        try:
            async for message in self.client.session(link.outgoing()):
                kind = message.WhichOneof("message")
                if kind == "welcome":
                    heartbeat = self._welcomed(message.welcome, link)
                elif kind == "closing":
                    log.info("scheduler closing the session: %s", message.closing.reason)
                    pause = min(message.closing.reconnect_after.ToNanoseconds() / 1e9, 5.0)
                    break
                else:
                    self._handle(kind, message)
        finally:
            link.close()
            self.output.connected(None)
            if heartbeat is not None:
                heartbeat.cancel()
        if heartbeat is None:
            raise UnavailableError("the session ended before the scheduler welcomed it")
        log.warning("the session with %s ended; reconnecting", self.config.scheduler)
        await asyncio.sleep(max(pause, random.uniform(0, 0.2)))  # never a tight loop

    async def _metadata_now_and_then(self) -> None:
        """What can change under a running worker (a program installed, the
        memory it has) is looked at again every few minutes, not after every
        task: on the real path that cost more than the task itself."""
        while True:
            await asyncio.sleep(METADATA_EVERY)
            await self._send_metadata(force=False)

    def _welcomed(self, welcome: workers_pb2.SessionWelcome, link: Link) -> asyncio.Task[None]:
        log.info("connected to %s as %s", self.config.scheduler, welcome.worker_name)
        self.output.connected(link.send)
        for result in self.outbox.pending():
            self._send_result(result)
        interval = max(welcome.heartbeat_interval.ToNanoseconds() / 1e9, 0.05)
        return asyncio.create_task(self._heartbeats(link, interval))

    async def _heartbeats(self, link: Link, interval: float) -> None:
        while link.open:
            await asyncio.sleep(interval)
            running = [
                common_pb2.Lease(work_request_id=j.work_request_id, attempt=j.attempt)
                for j in self.runner.running()
            ]
            link.send(heartbeat=workers_pb2.WorkerHeartbeat(running=running))

    def _handle(self, kind: str | None, message: workers_pb2.SessionResponse) -> None:
        if kind == "assignments":
            for assignment in message.assignments.assignments:
                self._start(assignment)
        elif kind == "abort":
            lease = message.abort.lease
            if self.runner.holds(lease.work_request_id, lease.attempt):
                log.info("abort of %s: %s", lease.work_request_id, message.abort.message)
                self._spawn(self.runner.abort(lease.work_request_id, lease.attempt))
            else:  # queued, not started: it ends at once
                self._give_up((lease.work_request_id, lease.attempt), ABORTED)
        elif kind == "metadata_refresh":
            self._spawn(self._send_metadata(force=True))
        elif kind == "acks":
            for ack in message.acks.acks:
                self._acknowledged(ack)
        elif kind == "output_acks":
            for output_ack in message.output_acks.acks:
                self.output.acknowledged(output_ack)

    def _acknowledged(self, ack: workers_pb2.ReportAck) -> None:
        lease = ack.lease
        if ack.HasField("problem"):
            log.warning("report on %s refused: %s", lease.work_request_id, ack.problem.message)
        if ack.kind == workers_pb2.REPORT_KIND_COMPLETED:
            self.outbox.remove(lease.work_request_id, lease.attempt)

    # -- Jobs -------------------------------------------------------------

    async def upload(self, job: Job, request: Upload) -> str:
        """Upload an artifact for a running job, through this worker's connection,
        in a span under the task's run span."""
        category = request.category
        files = {name: Path(path) for name, path in request.files.items()}
        total = sum(path.stat().st_size for path in files.values())
        with tracer.start_as_current_span(
            "taskyard.upload",
            context=context_from(request.trace_context or job.trace_context),
            attributes={
                "taskyard.work_request.id": job.work_request_id,
                "taskyard.artifact.category": category,
                "taskyard.artifact.files": len(files),
                "taskyard.artifact.bytes": total,
            },
        ) as span:
            lease = common_pb2.Lease(work_request_id=job.work_request_id, attempt=job.attempt)
            artifact_id = await self.client.upload(lease, category, files, json.dumps(request.data))
            span.set_attribute("taskyard.artifact.id", artifact_id)
            return artifact_id

    async def download(self, artifact_id: str, directory: Path) -> list[Path]:
        """Download an artifact the worker may read (an environment of work it holds)."""
        return await self.client.download(artifact_id, directory)

    def _start(self, assignment: workers_pb2.Assignment) -> None:
        lease = assignment.lease
        job = Job(
            work_request_id=lease.work_request_id,
            attempt=lease.attempt,
            task_name=assignment.task_name,
            task_data_json=assignment.task_data_json,
            trace_context={
                key: value
                for key, value in (
                    ("traceparent", assignment.trace_context.traceparent),
                    ("tracestate", assignment.trace_context.tracestate),
                )
                if value
            },
        )
        # Counted from the jobs accepted, not from the runner's free slots:
        # several assignments in one message are accepted before any runs.
        if self.draining or len(self._jobs) >= self.runner.slot_count + self.config.prefetch:
            why = STOPPING if self.draining else "no free slot"
            self._link.report(declined=workers_pb2.WorkDeclined(lease=lease, reason=why))
            log.info("gave back %s: %s", job.work_request_id, why)
            return
        timeout = assignment.timeout.ToNanoseconds() / 1e9 if assignment.HasField("timeout") else 0
        key = (job.work_request_id, job.attempt)
        # Waiting for its slot from now: an abort in the same message finds it.
        self._queued[key] = asyncio.ensure_future(self._free.acquire())
        self._jobs[key] = asyncio.create_task(self._run(job, lease, timeout))

    async def _run(self, job: Job, lease: common_pb2.Lease, timeout: float) -> None:
        key = (job.work_request_id, job.attempt)
        why = await self._turn(key)
        if why is not None:
            self._jobs.pop(key, None)
            if why == ABORTED:
                await self._deliver(Result(job.work_request_id, job.attempt, "aborted"))
            else:
                self._link.report(declined=workers_pb2.WorkDeclined(lease=lease, reason=why))
            log.info("gave back %s: %s", job.work_request_id, why)
            return
        try:
            await self._attempt(job, lease, timeout)
        finally:
            self._free.release()

    async def _turn(self, key: tuple[str, int]) -> str | None:
        """Wait for a free slot (at once unless prefetched): None once the
        job holds one, else why it was given up while it waited."""
        waiter = self._queued[key]
        try:
            await waiter
        except asyncio.CancelledError:
            if key not in self._given_up:
                raise  # the worker itself is stopping
        finally:
            self._queued.pop(key, None)
        why = self._given_up.pop(key, None)
        if why is not None and not waiter.cancelled():
            self._free.release()  # the slot came as it was given up
        return why

    def _report(self, **report: Any) -> None:
        """A report through whichever session is open now."""
        self._link.report(**report)

    def holds_queued(self, work_request_id: str, attempt: int) -> bool:
        """Whether this attempt waits here for a slot (prefetched)."""
        return (work_request_id, attempt) in self._queued

    def _give_up(self, key: tuple[str, int], why: str) -> None:
        """End a job that waits for a slot: aborted, or given back."""
        waiter = self._queued.get(key)
        if waiter is not None and key not in self._given_up:
            self._given_up[key] = why
            waiter.cancel()

    async def _attempt(self, job: Job, lease: common_pb2.Lease, timeout: float) -> None:
        start = StartReport(self._report, lease)
        log.debug("running %s (%s, attempt %d)", job.work_request_id, job.task_name, job.attempt)
        timer = None
        if timeout > 0:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(
                timeout + TIMEOUT_BACKSTOP,
                lambda: self._spawn(self.runner.abort(job.work_request_id, job.attempt)),
            )
        try:
            report = await self.runner.run(job)
        finally:
            if timer is not None:
                timer.cancel()
            self._jobs.pop((job.work_request_id, job.attempt), None)
            start.now()
        self.output.ended((job.work_request_id, job.attempt))
        details = json.dumps(report.details) if report.details else ""
        result = Result(
            job.work_request_id,
            job.attempt,
            report.outcome,
            report.output_json,
            report.error,
            details,
        )
        log.debug("finished %s: %s", job.work_request_id, report.outcome)
        await self._deliver(result)

    async def _deliver(self, result: Result) -> None:
        """Send a result as it is written to disk; it goes again after a
        reconnect (the outbox says why the send need not wait for the disk)."""
        self._send_result(result)
        await self.outbox.put(result)

    def _send_result(self, result: Result) -> None:
        error = None
        if result.error:
            error = wr_pb2.WorkRequestError(
                reason=result.error.get("reason", ""),
                type=result.error.get("type", ""),
                message=result.error.get("message", ""),
            )
        self._link.report(
            completed=workers_pb2.WorkCompleted(
                lease=common_pb2.Lease(
                    work_request_id=result.work_request_id, attempt=result.attempt
                ),
                outcome=OUTCOMES[result.outcome],
                output_json=result.output_json,
                error=error,
                details_json=result.details_json,
            )
        )

    async def _send_metadata(self, force: bool) -> None:
        metadata = await asyncio.to_thread(
            worker_metadata, self.config.slots, self.runner.settings.metadata()
        )
        if force or metadata != self._metadata:
            self._metadata = metadata
            self._link.send(
                metadata_update=workers_pb2.MetadataUpdate(metadata_json=json.dumps(metadata))
            )
