"""TLS: a scheduler with a certificate, and with required client certificates."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import trustme

from taskyard.scheduler.config import SchedulerConfig
from taskyard.scheduler.server import build_scheduler, start_server
from taskyard.v1 import operator_pb2, operator_pb2_grpc


def write(tmp_path: Path, name: str, blob: trustme.Blob) -> str:
    path = tmp_path / name
    blob.write_to_path(str(path))
    return str(path)


async def status_of(address: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    """The status of an unauthenticated call over TLS with `credentials`."""
    async with grpc.aio.secure_channel(address, credentials) as channel:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        try:
            await stub.ListTasks(operator_pb2.ListTasksRequest(), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("mutual", [False, True])
async def test_tls(tmp_path: Path, mutual: bool) -> None:
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    client_cert = authority.issue_cert("client@taskyard")
    config = SchedulerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path,
        tls_cert=write(tmp_path, "server.pem", server_cert.cert_chain_pems[0]),
        tls_key=write(tmp_path, "server.key", server_cert.private_key_pem),
        tls_client_ca=write(tmp_path, "ca.pem", authority.cert_pem) if mutual else "",
    )
    running = await start_server(build_scheduler(config), config)
    address = f"127.0.0.1:{running.port}"
    try:
        trusting = grpc.ssl_channel_credentials(authority.cert_pem.bytes())
        with_identity = grpc.ssl_channel_credentials(
            authority.cert_pem.bytes(),
            client_cert.private_key_pem.bytes(),
            client_cert.cert_chain_pems[0].bytes(),
        )
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        # TLS works: the call reaches the scheduler, which asks for a token.
        assert await status_of(address, with_identity) == unauthenticated
        without_identity = await status_of(address, trusting)
        assert (
            (without_identity != unauthenticated)
            if mutual
            else (without_identity == unauthenticated)
        )
        untrusted = grpc.ssl_channel_credentials(trustme.CA().cert_pem.bytes())
        assert await status_of(address, untrusted) == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop(1)
