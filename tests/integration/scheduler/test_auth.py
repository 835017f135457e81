"""The authentication and authorization matrix, over every Taskyard RPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import operator_pb2, workers_pb2
from tests.integration.scheduler.harness import Harness

SERVICES = [
    "taskyard.v1.WorkRequestService",
    "taskyard.v1.OperatorService",
    "taskyard.v1.WorkerService",
]
METHODS = [
    method
    for service in SERVICES
    for method in descriptor_pool.Default().FindServiceByName(service).methods
    if method.full_name != "taskyard.v1.WorkerService.Register"
]
ADMIN_ONLY = {
    m.full_name
    for m in METHODS
    if m.containing_service.name == "OperatorService" and m.name != "ListTasks"
}
SUBMIT_ALLOWED = {
    m.full_name
    for m in METHODS
    if m.containing_service.name == "WorkRequestService" or m.name == "ListTasks"
}


async def call_code(
    channel: grpc.aio.Channel, method: MethodDescriptor, metadata: Any
) -> grpc.StatusCode:
    """The status code of calling `method` with an empty request; OK for a stream
    that is admitted and then waits (a watch of everything)."""
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    serialize, deserialize = request_class.SerializeToString, response_class.FromString
    try:
        async with asyncio.timeout(1 if method.server_streaming else 5):
            if method.client_streaming:
                call = channel.stream_stream(path, serialize, deserialize)

                async def requests() -> AsyncIterator[Any]:
                    yield request_class()

                async for _ in call(requests(), metadata=metadata):
                    break
            elif method.server_streaming:
                async for _ in channel.unary_stream(path, serialize, deserialize)(
                    request_class(), metadata=metadata
                ):
                    break
            else:
                await channel.unary_unary(path, serialize, deserialize)(
                    request_class(), metadata=metadata
                )
    except grpc.aio.AioRpcError as error:
        return error.code()
    except TimeoutError:
        assert method.server_streaming
    return grpc.StatusCode.OK


AUTH_FAILURES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
async def test_no_token_and_a_bad_token_are_unauthenticated(
    harness: Harness, method: MethodDescriptor
) -> None:
    for metadata in ((), bearer_metadata("not-a-token"), (("authorization", "Basic abc"),)):
        code = await call_code(harness.channel, method, metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED, metadata


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
async def test_roles(harness: Harness, method: MethodDescriptor) -> None:
    worker = await harness.new_worker()
    as_admin = await call_code(harness.channel, method, harness.admin)
    as_submitter = await call_code(harness.channel, method, harness.submitter)
    as_worker = await call_code(harness.channel, method, worker.metadata)
    if method.containing_service.name == "WorkerService":
        assert as_admin == as_submitter == grpc.StatusCode.PERMISSION_DENIED
        assert as_worker not in AUTH_FAILURES
        return
    assert as_admin not in AUTH_FAILURES
    assert as_worker == grpc.StatusCode.PERMISSION_DENIED
    if method.full_name in ADMIN_ONLY:
        assert as_submitter == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert method.full_name in SUBMIT_ALLOWED
        assert as_submitter not in AUTH_FAILURES


async def test_a_disabled_worker_is_refused_a_session(harness: Harness) -> None:
    worker = await harness.new_worker(enable=False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await worker.connect()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"taskyard workers enable {worker.name}" in (caught.value.details() or "")


async def test_a_revoked_token_stops_working(harness: Harness) -> None:
    created = await harness.operator.CreateToken(
        operator_pb2.CreateTokenRequest(role=operator_pb2.TOKEN_ROLE_SUBMIT), metadata=harness.admin
    )
    metadata = bearer_metadata(created.secret)
    tasks = operator_pb2.ListTasksRequest()
    assert (await harness.operator.ListTasks(tasks, metadata=metadata)).tasks
    await harness.operator.RevokeToken(
        operator_pb2.RevokeTokenRequest(id=created.token.id), metadata=harness.admin
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.operator.ListTasks(tasks, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_activation_token_enables_a_worker_once(harness: Harness) -> None:
    created = await harness.operator.CreateToken(
        operator_pb2.CreateTokenRequest(role=operator_pb2.TOKEN_ROLE_WORKER_ACTIVATION),
        metadata=harness.admin,
    )
    first = await harness.workers.Register(
        workers_pb2.RegisterRequest(name="a", token="x" * 43, activation_token=created.secret)
    )
    assert first.enabled
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.workers.Register(
            workers_pb2.RegisterRequest(name="b", token="y" * 43, activation_token=created.secret)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # never a client token
        await harness.operator.ListTasks(
            operator_pb2.ListTasksRequest(), metadata=bearer_metadata(created.secret)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
