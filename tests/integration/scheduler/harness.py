"""A real scheduler on 127.0.0.1:0 over SQLite, and a test-only worker session client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from taskyard.protocol import PROTOCOL_VERSION
from taskyard.rpc.credentials import bearer_metadata, new_token
from taskyard.scheduler.blobs.port import BlobStore
from taskyard.scheduler.config import SchedulerConfig
from taskyard.scheduler.domain import Role
from taskyard.scheduler.server import RunningServer, build_scheduler, start_server
from taskyard.scheduler.service.artifacts import Artifacts
from taskyard.tasks import Task
from taskyard.v1 import (
    artifacts_pb2_grpc,
    common_pb2,
    operator_pb2,
    operator_pb2_grpc,
    work_requests_pb2,
    work_requests_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)

FAST = {"heartbeat_interval": 0.5, "lease_grace": 0.5, "shutdown_grace": 1.0}


@dataclass
class Harness:
    """A running scheduler and clients to it."""

    running: RunningServer
    config: SchedulerConfig
    channel: grpc.aio.Channel
    admin: tuple[tuple[str, str], ...]
    submitter: tuple[tuple[str, str], ...]
    work_requests: work_requests_pb2_grpc.WorkRequestServiceAsyncStub = field(init=False)
    operator: operator_pb2_grpc.OperatorServiceAsyncStub = field(init=False)
    workers: workers_pb2_grpc.WorkerServiceAsyncStub = field(init=False)
    artifacts: artifacts_pb2_grpc.ArtifactServiceAsyncStub = field(init=False)

    def __post_init__(self) -> None:
        self.artifacts = artifacts_pb2_grpc.ArtifactServiceStub(self.channel)
        self.work_requests = work_requests_pb2_grpc.WorkRequestServiceStub(self.channel)
        self.operator = operator_pb2_grpc.OperatorServiceStub(self.channel)
        self.workers = workers_pb2_grpc.WorkerServiceStub(self.channel)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    async def submit(self, task: str = "noop", data: Any = None, **fields: Any) -> str:
        request = work_requests_pb2.SubmitRequest(
            task_name=task, task_data_json=json.dumps(data or {}), **fields
        )
        response = await self.work_requests.Submit(request, metadata=self.submitter)
        return response.work_request.id

    async def get(self, work_request_id: str) -> work_requests_pb2.WorkRequest:
        response = await self.work_requests.Get(
            work_requests_pb2.GetRequest(id=work_request_id), metadata=self.submitter
        )
        return response.work_request

    async def wait_for_state(
        self, work_request_id: str, state: int, timeout: float = 10.0
    ) -> work_requests_pb2.WorkRequest:
        stream = self.work_requests.Watch(
            work_requests_pb2.WatchRequest(id=work_request_id), metadata=self.submitter
        )
        async with asyncio.timeout(timeout):
            async for change in stream:
                if change.work_request.state == state:
                    stream.cancel()
                    return change.work_request
        raise AssertionError(f"{work_request_id} ended before reaching state {state}")

    async def new_worker(self, name: str = "w", enable: bool = True, **hello: Any) -> SessionClient:
        client = SessionClient(self, name)
        await client.register()
        if enable:
            await self.operator.EnableWorker(
                operator_pb2.EnableWorkerRequest(name=client.name), metadata=self.admin
            )
        return client


async def start_harness(data_dir: Path, blobs: BlobStore | None = None, **settings: Any) -> Harness:
    """Start a scheduler with fast timings over SQLite in `data_dir` (and `blobs`,
    instead of the local blob store, when given)."""
    config = SchedulerConfig(listen="127.0.0.1:0", data_dir=data_dir, **{**FAST, **settings})
    scheduler = build_scheduler(config)
    if blobs is not None:
        scheduler.artifacts = Artifacts(scheduler.core, blobs, scheduler.artifacts.limits)
    running = await start_server(scheduler, config)
    _, admin = await scheduler.tokens.create(Role.ADMIN, "tests")
    _, submitter = await scheduler.tokens.create(Role.SUBMIT, "tests")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    return Harness(running, config, channel, bearer_metadata(admin), bearer_metadata(submitter))


async def stop_harness(harness: Harness) -> None:
    await harness.channel.close(None)
    await harness.running.stop(harness.config.shutdown_grace)


class SessionClient:
    """Plays a worker on the wire: register, hello, read pushes, send reports."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name
        self.token = new_token()
        self.metadata = bearer_metadata(self.token)
        self._outgoing: asyncio.Queue[workers_pb2.SessionRequest | None] = asyncio.Queue()
        self._call: Any = None
        self.received: asyncio.Queue[tuple[str | None, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    async def register(self) -> workers_pb2.RegisterResponse:
        response = await self.harness.workers.Register(
            workers_pb2.RegisterRequest(name=self.name, token=self.token)
        )
        self.name = response.name
        return response

    async def connect(
        self,
        metadata: dict[str, Any] | None = None,
        slots: int = 1,
        running: list[common_pb2.Lease] | None = None,
        heartbeats: bool = True,
        protocol_version: int = PROTOCOL_VERSION,
        *,
        prefetch: int = 0,
    ) -> workers_pb2.SessionWelcome:
        """Open the session with a hello; return the welcome. Like a real
        worker, it then sends heartbeats, unless `heartbeats` is false."""
        hello = workers_pb2.WorkerHello(
            protocol_version=protocol_version,
            metadata_json=json.dumps(
                Task.analyze_worker_all_tasks() if metadata is None else metadata
            ),
            slots=slots,
            running=running or [],
            prefetch=prefetch,
        )
        await self._stop_heartbeats()
        self._outgoing = asyncio.Queue()
        self._outgoing.put_nowait(workers_pb2.SessionRequest(hello=hello))
        self._call = self.harness.workers.Session(self._requests(), metadata=self.metadata)
        self._reader = asyncio.create_task(self._read())
        welcome: workers_pb2.SessionWelcome = await self.expect("welcome")
        if heartbeats:
            interval = welcome.heartbeat_interval.ToNanoseconds() / 1e9
            self._heartbeats = asyncio.create_task(self._beat(interval))
        return welcome

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.send(heartbeat=workers_pb2.WorkerHeartbeat())

    async def _stop_heartbeats(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            await asyncio.gather(self._heartbeats, return_exceptions=True)
            self._heartbeats = None

    async def _requests(self) -> AsyncIterator[workers_pb2.SessionRequest]:
        while (request := await self._outgoing.get()) is not None:
            yield request

    async def _read(self) -> None:
        """Queue what the scheduler pushes, one item per assignment or ack."""
        async for response in self._call:
            kind = response.WhichOneof("message")
            if kind == "assignments":
                for assignment in response.assignments.assignments:
                    self.received.put_nowait(("assignment", assignment))
            elif kind == "acks":
                for ack in response.acks.acks:
                    self.received.put_nowait(("ack", ack))
            else:
                self.received.put_nowait((kind, getattr(response, kind)))

    async def expect(self, kind: str, timeout: float = 5.0) -> Any:
        """The next pushed item (an assignment, an ack, a welcome, ...), which
        must be of `kind`."""
        async with asyncio.timeout(timeout):
            while True:
                if self._reader is not None and self._reader.done() and self.received.empty():
                    self._reader.result()
                    raise AssertionError(f"the session ended while waiting for {kind}")
                try:
                    got, item = await asyncio.wait_for(self.received.get(), 0.1)
                except TimeoutError:
                    continue
                assert got == kind, (got, item)
                return item

    def send(self, **message: Any) -> None:
        self._outgoing.put_nowait(workers_pb2.SessionRequest(**message))

    def report(self, *reports: workers_pb2.WorkReport) -> None:
        """Send `reports` in one message."""
        self.send(reports=workers_pb2.WorkReports(reports=reports))

    def started(self, lease: common_pb2.Lease) -> None:
        self.report(started_report(lease))

    def completed(
        self, lease: common_pb2.Lease, outcome: workers_pb2.WorkOutcome.ValueType, **fields: Any
    ) -> None:
        self.report(completion(lease, outcome, **fields))

    async def disconnect(self) -> None:
        """Cut the stream abruptly, as a crashed worker would."""
        await self._stop_heartbeats()
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def finish_stream(self) -> None:
        """Close the stream cleanly from the worker's side."""
        await self._stop_heartbeats()
        self._outgoing.put_nowait(None)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def completion(
    lease: common_pb2.Lease, outcome: workers_pb2.WorkOutcome.ValueType, **fields: Any
) -> workers_pb2.WorkReport:
    """A completed report, for `SessionClient.report`."""
    return workers_pb2.WorkReport(
        completed=workers_pb2.WorkCompleted(lease=lease, outcome=outcome, **fields)
    )


def started_report(lease: common_pb2.Lease) -> workers_pb2.WorkReport:
    """A started report, for `SessionClient.report`."""
    return workers_pb2.WorkReport(started=workers_pb2.WorkStarted(lease=lease))
