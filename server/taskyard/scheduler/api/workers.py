"""WorkerService: registration and the live worker session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial

import grpc

from taskyard.errors import FailedPreconditionError, InvalidArgumentError, TaskyardError
from taskyard.logs import RateLimitedLog
from taskyard.protocol import PROTOCOL_VERSION, SUPPORTED
from taskyard.scheduler import lifecycle
from taskyard.scheduler.api import convert
from taskyard.scheduler.api.access import DRAIN_SECONDS, Context, principal
from taskyard.scheduler.domain import Lease, WorkError
from taskyard.scheduler.service import messages
from taskyard.scheduler.service.auth import require_worker
from taskyard.scheduler.service.live import Session as WorkerSession
from taskyard.scheduler.service.sessions import WorkerSessions
from taskyard.scheduler.service.task_logs import TaskLogs
from taskyard.scheduler.service.workers import Workers, parse_json_object
from taskyard.v1 import common_pb2, workers_pb2_grpc
from taskyard.v1 import workers_pb2 as pb

log = logging.getLogger(__name__)


class WorkerServicer(workers_pb2_grpc.WorkerServiceServicer):
    """What worker daemons talk to."""

    def __init__(self, workers: Workers, sessions: WorkerSessions, logs: TaskLogs) -> None:
        self._workers = workers
        self._sessions = sessions
        self._logs = logs

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        worker = await self._workers.register(request.name, request.token, request.activation_token)
        return pb.RegisterResponse(name=worker.name, enabled=worker.enabled)

    async def Session(
        self, request_iterator: AsyncIterator[pb.SessionRequest], context: Context
    ) -> AsyncIterator[pb.SessionResponse]:
        worker_name = require_worker(principal()).worker_name
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("message") != "hello":
            raise InvalidArgumentError("the first message of a session must be a hello")
        hello = first.hello
        _check_protocol(hello.protocol_version)
        session = await self._workers.open_session(
            worker_name,
            hello.metadata_json,
            hello.slots,
            [convert.lease_from_proto(lease) for lease in hello.running],
            hello.prefetch,
        )
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            while (ready := await session.ready()) is not None:
                for response in convert.session_responses(ready):
                    yield response
        finally:
            self._sessions.close_session(session)
            await _drained(reader)
        if session.failure is not None:  # the worker broke the protocol: say how
            raise session.failure

    async def _read(
        self, requests: AsyncIterator[pb.SessionRequest], session: WorkerSession
    ) -> None:
        """Read the worker's messages. Reports about one lease are handled in
        order; reports about different leases run concurrently, so one slow
        commit does not hold up the whole session."""
        last: dict[str, asyncio.Task[None]] = {}
        try:
            async for request in requests:
                if session.closed:
                    continue  # the session ended: what the worker still sends is dropped
                session.touch()
                for key, step in self._steps(request, session):
                    last[key] = asyncio.create_task(self._after(last.get(key), step, session))
                if len(last) > 1000:
                    last = {k: t for k, t in last.items() if not t.done()}
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except TaskyardError as error:  # a message that breaks the protocol
            _refuse(session, error)
        except Exception:
            log.exception("session of %s failed", session.worker_name)
        finally:
            session.close()
            for task in last.values():
                task.cancel()

    def _steps(self, request: pb.SessionRequest, session: WorkerSession) -> list[tuple[str, Step]]:
        """What to do about one message, keyed by the lease each step is about
        ("" for the worker itself)."""
        kind = request.WhichOneof("message")
        if kind == "metadata_update":
            text = request.metadata_update.metadata_json
            return [("", lambda: self._metadata_update(session, text))]
        if kind == "reports":
            return [
                (lease.work_request_id, partial(self._report, session, lease, started, report))
                for lease, started, report in fold_reports(request.reports.reports)
            ]
        if kind == "output":
            output = request.output
            return [(output.lease.work_request_id, partial(self._output, session, output))]
        if kind == "draining":
            self._sessions.draining(session)
        return []

    async def _output(self, session: WorkerSession, output: pb.TaskOutput) -> None:
        """Store a running task's output; tell the worker how much is stored."""
        lease = convert.lease_from_proto(output.lease)
        chunks = [(chunk.stream, chunk.data) for chunk in output.chunks]
        committed, closed = await self._logs.append(
            session.worker_name, lease, output.offset, chunks, output.end
        )
        session.send(messages.OutputAck(lease, committed, closed))

    async def _after(
        self, previous: asyncio.Task[None] | None, step: Step, session: WorkerSession
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await step()
        except TaskyardError as error:
            _refuse(session, error)
        except Exception:
            log.exception("could not handle a message from %s", session.worker_name)
            session.close()

    async def _metadata_update(self, session: WorkerSession, text: str) -> None:
        metadata = parse_json_object(text, "metadata_update.metadata_json")
        await self._sessions.metadata_changed(session, metadata)

    async def _report(
        self,
        session: WorkerSession,
        lease: common_pb2.Lease,
        started: bool,
        report: Report,
    ) -> None:
        """Record a start, a completion (or both at once) or a decline; answer
        the worker: always for a completion (the worker keeps it until then),
        only on refusal for the others."""
        domain_lease = convert.lease_from_proto(lease)
        try:
            if report is UNKNOWN_REPORT:
                raise InvalidArgumentError(
                    "a report of a kind this scheduler does not know (a newer worker?)",
                    reason="REPORT_KIND_UNKNOWN",
                )
            if isinstance(report, pb.WorkCompleted):
                await self._completed(session, domain_lease, started, report)
            elif isinstance(report, pb.WorkDeclined):
                await self._sessions.declined(session, domain_lease, report.reason)
            else:
                await self._sessions.started(session, domain_lease)
        except TaskyardError as error:
            session.send(messages.Ack(domain_lease, _kind(report), error))
            return
        if isinstance(report, pb.WorkCompleted):
            session.send(messages.Ack(domain_lease, messages.ReportKind.COMPLETED))

    async def _completed(
        self, session: WorkerSession, lease: Lease, started: bool, report: pb.WorkCompleted
    ) -> None:
        outcome = convert.OUTCOMES.get(report.outcome)
        if outcome is None:
            raise InvalidArgumentError("a completed report needs an outcome")
        error = None
        if report.HasField("error"):
            error = WorkError(report.error.reason, report.error.message, report.error.type)
        ending = lifecycle.Ending(outcome, report.output_json, error, report.details_json)
        await self._sessions.completed(session, lease, ending, started=started)


Step = Callable[[], Awaitable[None]]
_mistakes = RateLimitedLog(log)


async def _drained(reader: asyncio.Task[None]) -> None:
    """Let the reader drop what the worker still sends until it closes its
    side (within the bound of `access.DRAIN_SECONDS`), then stop it: a
    worker still writing when its session ends would otherwise see its own
    INTERNAL instead of the session's status."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), DRAIN_SECONDS)
    reader.cancel()


def _refuse(session: WorkerSession, error: TaskyardError) -> None:
    """End a session whose worker sent what the protocol does not allow; the
    stream ends with the error's status."""
    _mistakes.warning(
        error.reason, "closing the session of %s: %s", session.worker_name, error.message[:200]
    )
    session.failure = session.failure or error.with_traceback(None)  # no frame kept alive
    session.close()


#: A report to record: a completion, a decline, or None for a start alone.
Report = pb.WorkCompleted | pb.WorkDeclined | pb.WorkReport | None
#: Stands for a report of a kind this scheduler does not know.
UNKNOWN_REPORT = pb.WorkReport()


def _kind(report: Report) -> messages.ReportKind:
    if report is UNKNOWN_REPORT:
        return messages.ReportKind.UNKNOWN
    if isinstance(report, pb.WorkCompleted):
        return messages.ReportKind.COMPLETED
    if isinstance(report, pb.WorkDeclined):
        return messages.ReportKind.DECLINED
    return messages.ReportKind.STARTED


def _check_protocol(version: int) -> None:
    """Refuse at once a worker that speaks a protocol this scheduler cannot serve."""
    if version in SUPPORTED:
        return
    said = f"{version}" if version else "0 (unversioned: the first v1 contract)"
    raise FailedPreconditionError(
        f"this scheduler serves worker protocol {PROTOCOL_VERSION}; the worker speaks "
        f"{said}: upgrade the worker",
        reason="PROTOCOL_VERSION_UNSUPPORTED",
        metadata={"scheduler_protocol": str(PROTOCOL_VERSION), "worker_protocol": str(version)},
    )


def fold_reports(reports: Iterable[pb.WorkReport]) -> list[tuple[common_pb2.Lease, bool, Report]]:
    """Reports as steps `(lease, started, report)`, in order. A start
    followed by the completion of the same lease in one message is one step,
    recorded in one transition."""
    steps: list[tuple[common_pb2.Lease, bool, Report]] = []
    for report in reports:
        kind = report.WhichOneof("report")
        if kind == "started":
            steps.append((report.started.lease, True, None))
        elif kind == "declined":
            steps.append((report.declined.lease, False, report.declined))
        elif kind == "completed":
            lease = report.completed.lease
            if steps and steps[-1][2] is None and steps[-1][0] == lease:
                steps.pop()
                steps.append((lease, True, report.completed))
            else:
                steps.append((lease, False, report.completed))
        else:  # a kind this scheduler does not know (a newer worker): refused in its ack
            steps.append((common_pb2.Lease(), False, UNKNOWN_REPORT))
    return steps
