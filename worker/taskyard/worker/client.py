"""The scheduler port: the worker's only way to the scheduler.

`SchedulerPort` is what the agent needs: registering, the session stream,
and artifacts up and down for the work it holds. Session messages are the
worker protocol's own messages (`taskyard.v1.workers_pb2`, the contract any
language's worker speaks); the token, the stubs and gRPC's errors stay in
here: failed calls come out as Taskyard errors. `SchedulerClient` is the
gRPC adapter; `taskyard.worker.testing.FakeScheduler` is an in-process one
for tests of the agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Protocol

import grpc

from taskyard.errors import UnavailableError
from taskyard.rpc import status as rpc_status
from taskyard.rpc import targets, transfer
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.rpc.tracing import client_interceptors
from taskyard.v1 import artifacts_pb2_grpc, common_pb2, workers_pb2, workers_pb2_grpc

#: gRPC's own reconnection waits up to 2 minutes by default; a worker must be
#: back within seconds of its scheduler (the agent adds its own backoff).
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_channel(address: str, tls_ca: str = "") -> grpc.aio.Channel:
    """A channel to the scheduler (or the first that answers of several:
    `taskyard.rpc.targets`), with TLS when a CA file is given."""
    interceptors = client_interceptors()
    target = targets.channel_target(address)
    options = [
        *CHANNEL_OPTIONS,
        *RECONNECT_OPTIONS,
        ("grpc.service_config", targets.SERVICE_CONFIG),
    ]
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
        return grpc.aio.secure_channel(target, credentials, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options, interceptors=interceptors)


class SchedulerPort(Protocol):
    """The scheduler, as the worker agent sees it."""

    async def wait_reachable(self, timeout: float = 2.0) -> None:
        """Return once the scheduler can be reached; UNAVAILABLE otherwise."""
        ...

    async def register(self, name: str, activation_token: str) -> tuple[str, bool]:
        """Register this worker; its unique name and whether it is enabled."""
        ...

    def session(
        self, requests: AsyncIterator[workers_pb2.SessionRequest]
    ) -> AsyncIterator[workers_pb2.SessionResponse]:
        """The session: what the scheduler pushes, until it ends."""
        ...

    async def upload(
        self,
        lease: common_pb2.Lease,
        category: str,
        files: Mapping[str, Path],
        data_json: str,
    ) -> str:
        """Upload files as an artifact of the work of `lease`; its id."""
        ...

    async def download(self, artifact_id: str, directory: Path) -> list[Path]:
        """An artifact's files, digest-checked, into `directory`."""
        ...

    async def close(self) -> None:
        """Let go of the connection."""
        ...


class SchedulerClient:
    """The scheduler port over gRPC, as the worker whose token it holds."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.channel = channel
        self._token = token
        self._metadata = bearer_metadata(token)
        self._stub = workers_pb2_grpc.WorkerServiceStub(channel)
        self._artifacts = artifacts_pb2_grpc.ArtifactServiceStub(channel)

    async def wait_reachable(self, timeout: float = 2.0) -> None:
        """Return once the channel is connected; UNAVAILABLE after `timeout`."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            raise UnavailableError(f"no connection within {timeout:g}s") from None

    async def register(self, name: str, activation_token: str) -> tuple[str, bool]:
        """Register; return the worker's unique name and whether it is enabled."""
        request = workers_pb2.RegisterRequest(
            name=name, token=self._token, activation_token=activation_token
        )
        try:
            response = await self._stub.Register(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            raise rpc_status.from_rpc_error(error) from error
        return response.name, response.enabled

    async def session(
        self, requests: AsyncIterator[workers_pb2.SessionRequest]
    ) -> AsyncIterator[workers_pb2.SessionResponse]:
        """The session stream: what the scheduler pushes, until it ends."""
        call = self._stub.Session(requests, metadata=self._metadata)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise rpc_status.from_rpc_error(error) from error
        finally:
            call.cancel()

    async def upload(
        self,
        lease: common_pb2.Lease,
        category: str,
        files: Mapping[str, Path],
        data_json: str,
    ) -> str:
        """Upload files as an artifact of the work of `lease`; its id."""
        artifact = await transfer.upload(
            self._artifacts,
            self._metadata,
            category=category,
            files=files,
            work_request_id=lease.work_request_id,
            lease=lease,
            data_json=data_json,
            retry_for=transfer.WORKER_RETRY_FOR,
        )
        return artifact.id

    async def download(self, artifact_id: str, directory: Path) -> list[Path]:
        """An artifact's files, digest-checked, into `directory`."""
        return await transfer.download(self._artifacts, self._metadata, artifact_id, directory)

    async def close(self) -> None:
        await self.channel.close(None)
