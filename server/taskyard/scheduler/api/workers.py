"""WorkerService: registration and the live worker session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from taskyard.errors import InvalidArgumentError, TaskyardError
from taskyard.scheduler.api import convert
from taskyard.scheduler.api.access import Context, principal
from taskyard.scheduler.domain import WorkError
from taskyard.scheduler.service import messages
from taskyard.scheduler.service.auth import require_worker
from taskyard.scheduler.service.dispatch import Dispatcher
from taskyard.scheduler.service.live import Session as WorkerSession
from taskyard.scheduler.service.workers import Workers, parse_json_object
from taskyard.v1 import workers_pb2 as pb
from taskyard.v1 import workers_pb2_grpc

log = logging.getLogger(__name__)


class WorkerServicer(workers_pb2_grpc.WorkerServiceServicer):
    """What worker daemons talk to."""

    def __init__(self, workers: Workers, dispatcher: Dispatcher) -> None:
        self._workers = workers
        self._dispatcher = dispatcher

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
        session = await self._workers.open_session(
            worker_name,
            hello.metadata_json,
            hello.slots,
            [convert.lease_from_proto(lease) for lease in hello.running],
        )
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            while (message := await session.outbox.get()) is not None:
                yield convert.session_message_to_proto(message)
        finally:
            reader.cancel()
            self._dispatcher.close_session(session)

    async def _read(
        self, requests: AsyncIterator[pb.SessionRequest], session: WorkerSession
    ) -> None:
        """Read the worker's messages. Reports about one lease are handled in
        order; reports about different leases run concurrently, so one slow
        commit does not hold up the whole session."""
        last: dict[str, asyncio.Task[None]] = {}
        try:
            async for request in requests:
                session.touch()
                key = _lease_key(request)
                previous = last.get(key)
                last[key] = asyncio.create_task(self._after(previous, request, session))
                if len(last) > 1000:
                    last = {k: t for k, t in last.items() if not t.done()}
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception:
            log.exception("session of %s failed", session.worker_name)
        finally:
            session.close()
            for task in last.values():
                task.cancel()

    async def _after(
        self,
        previous: asyncio.Task[None] | None,
        request: pb.SessionRequest,
        session: WorkerSession,
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await self._handle(request, session)
        except Exception:
            log.exception("could not handle a message from %s", session.worker_name)
            session.close()

    async def _handle(self, request: pb.SessionRequest, session: WorkerSession) -> None:
        kind = request.WhichOneof("message")
        if kind == "metadata_update":
            text = request.metadata_update.metadata_json
            metadata = parse_json_object(text, "metadata_update.metadata_json")
            await self._dispatcher.metadata_changed(session, metadata)
        elif kind == "started":
            lease = convert.lease_from_proto(request.started.lease)
            await self._acknowledge(
                session,
                lease,
                messages.ReportKind.STARTED,
                self._dispatcher.started(session, lease),
            )
        elif kind == "completed":
            report = request.completed
            lease = convert.lease_from_proto(report.lease)
            error = None
            if report.HasField("error"):
                error = WorkError(report.error.reason, report.error.message, report.error.type)
            outcome = convert.OUTCOMES.get(report.outcome)
            if outcome is None:
                raise InvalidArgumentError("a completed report needs an outcome")
            done = self._dispatcher.completed(session, lease, outcome, report.output_json, error)
            await self._acknowledge(session, lease, messages.ReportKind.COMPLETED, done)

    async def _acknowledge(
        self, session: WorkerSession, lease: Any, kind: messages.ReportKind, report: Any
    ) -> None:
        """Answer a report: always for a completion (the worker keeps it until
        then), only on refusal for a start."""
        try:
            await report
        except TaskyardError as error:
            session.send(messages.Ack(lease, kind, error))
            return
        if kind is messages.ReportKind.COMPLETED:
            session.send(messages.Ack(lease, kind))


def _lease_key(request: pb.SessionRequest) -> str:
    """Which lease a message is about ("" for messages about the worker itself)."""
    kind = request.WhichOneof("message")
    if kind == "started":
        return request.started.lease.work_request_id
    if kind == "completed":
        return request.completed.lease.work_request_id
    return ""
