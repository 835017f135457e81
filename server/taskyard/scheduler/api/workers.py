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
from taskyard.scheduler.service.dispatch import Session as WorkerSession
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
        try:
            async for request in requests:
                session.touch()
                await self._handle(request, session)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception:
            log.exception("session of %s failed", session.worker_name)
        finally:
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
        try:
            await report
        except TaskyardError as error:
            session.send(messages.Ack(lease, kind, error))
            return
        session.send(messages.Ack(lease, kind))
