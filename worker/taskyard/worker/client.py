"""The scheduler client port: the worker's only way to the scheduler.

Wraps the generated stubs and turns failed calls into Taskyard errors, so the
agent never sees gRPC types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from taskyard.errors import UnavailableError
from taskyard.rpc import status as rpc_status
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.rpc.tracing import client_interceptors
from taskyard.v1 import artifacts_pb2_grpc, workers_pb2, workers_pb2_grpc

#: gRPC's own reconnection waits up to 2 minutes by default; a worker must be
#: back within seconds of its scheduler (the agent adds its own backoff).
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_channel(address: str, tls_ca: str = "") -> grpc.aio.Channel:
    """A channel to the scheduler, with TLS when a CA file is given."""
    interceptors = client_interceptors()
    options = [*CHANNEL_OPTIONS, *RECONNECT_OPTIONS]
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
        return grpc.aio.secure_channel(address, credentials, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options, interceptors=interceptors)


class SchedulerClient:
    """Register and open sessions; errors come out as TaskyardError."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._stub = workers_pb2_grpc.WorkerServiceStub(channel)
        self.artifacts = artifacts_pb2_grpc.ArtifactServiceStub(channel)

    async def wait_reachable(self, timeout: float = 2.0) -> None:
        """Return once the channel is connected; UNAVAILABLE after `timeout`."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            raise UnavailableError(f"no connection within {timeout:g}s") from None

    async def register(self, name: str, token: str, activation_token: str) -> tuple[str, bool]:
        """Register; return the worker's unique name and whether it is enabled."""
        request = workers_pb2.RegisterRequest(
            name=name, token=token, activation_token=activation_token
        )
        try:
            response = await self._stub.Register(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            raise rpc_status.from_rpc_error(error) from error
        return response.name, response.enabled

    async def session(
        self, token: str, requests: AsyncIterator[workers_pb2.SessionRequest]
    ) -> AsyncIterator[workers_pb2.SessionResponse]:
        """The session stream: what the scheduler pushes, until it ends."""
        call = self._stub.Session(requests, metadata=bearer_metadata(token))
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise rpc_status.from_rpc_error(error) from error
        finally:
            call.cancel()

    async def close(self) -> None:
        await self.channel.close(None)
