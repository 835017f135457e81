"""Every RPC against every kind of caller, from one table; and every client
RPC against another tenant's objects, from another.

`ALLOWED` says who may call each method. An RPC added to the protos without
an entry fails `test_every_rpc_has_an_entry`, and the README's role table
must say the same (`test_the_readme_table_matches`). A caller is refused by
access when the call ends UNAUTHENTICATED or PERMISSION_DENIED with one of the
access reasons; a refusal about the object (a lease not held, another
owner's request) is not the matrix's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from taskyard.protocol import PROTOCOL_VERSION
from taskyard.rpc import status as rpc_status
from taskyard.rpc import transfer
from taskyard.rpc.credentials import bearer_metadata, new_token
from taskyard.scheduler.domain import Role
from taskyard.scheduler.server import SERVICES
from taskyard.v1 import artifacts_pb2, operator_pb2, work_requests_pb2, workers_pb2
from tests.integration.scheduler.harness import Harness

README = Path(__file__).resolve().parents[3] / "README.md"
CLIENTS = frozenset({"submit", "admin"})
EVERYONE = frozenset(
    {
        "anonymous",
        "garbage",
        "revoked",
        "expired",
        "activation",
        "used-activation",
        "submit",
        "admin",
        "worker",
        "new-worker",
        "disabled-worker",
        "not-bearer",
        "revoked-admin",
    }
)
WORKERS = frozenset({"worker"})

#: Who may call each method: the one table.
ALLOWED: dict[str, frozenset[str]] = {
    "WorkRequestService.Submit": CLIENTS,
    "WorkRequestService.BatchSubmit": CLIENTS,
    "WorkRequestService.SubmitStream": CLIENTS,
    "WorkRequestService.Get": CLIENTS,
    "WorkRequestService.List": CLIENTS,
    "WorkRequestService.Watch": CLIENTS,
    "WorkRequestService.Abort": CLIENTS,
    "WorkRequestService.Retry": CLIENTS,
    "WorkRequestService.Explain": CLIENTS,
    "WorkRequestService.Logs": CLIENTS,
    "WorkRequestService.GetPipeline": CLIENTS,
    "WorkerService.Register": EVERYONE,
    "WorkerService.Session": WORKERS,
    "OperatorService.ListWorkers": frozenset({"admin"}),
    "OperatorService.EnableWorker": frozenset({"admin"}),
    "OperatorService.DisableWorker": frozenset({"admin"}),
    "OperatorService.SetWorkerMetadata": frozenset({"admin"}),
    "OperatorService.SetWorkerTaskFilter": frozenset({"admin"}),
    "OperatorService.SetWorkerTenants": frozenset({"admin"}),
    "OperatorService.RefreshWorkerMetadata": frozenset({"admin"}),
    "OperatorService.RemoveWorker": frozenset({"admin"}),
    "OperatorService.ListTasks": CLIENTS,
    "OperatorService.CreateToken": frozenset({"admin"}),
    "OperatorService.ListTokens": frozenset({"admin"}),
    "OperatorService.RevokeToken": frozenset({"admin"}),
    "OperatorService.Prune": frozenset({"admin"}),
    "OperatorService.ListTenants": frozenset({"admin"}),
    "OperatorService.SetTenant": frozenset({"admin"}),
    "ArtifactService.CreateArtifact": CLIENTS | WORKERS,
    "ArtifactService.UploadFile": CLIENTS | WORKERS,
    "ArtifactService.QueryUploadStatus": CLIENTS | WORKERS,
    "ArtifactService.GetArtifact": CLIENTS | WORKERS,
    "ArtifactService.ListArtifacts": CLIENTS | WORKERS,
    "ArtifactService.DownloadArtifact": CLIENTS | WORKERS,
}
ACCESS_REASONS = {
    "TOKEN_MISSING",
    "TOKEN_INVALID",
    "ROLE_REQUIRED",
    "WORKER_REQUIRED",
    "WORKER_DISABLED",
}
_FILES = (artifacts_pb2, operator_pb2, work_requests_pb2, workers_pb2)


def methods() -> list[MethodDescriptor]:
    found = []
    for module in _FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in SERVICES:
                found.extend(service.methods)
    return found


def key(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}.{method.name}"


def test_every_rpc_has_an_entry() -> None:
    assert sorted(key(m) for m in methods()) == sorted(ALLOWED)


def test_the_readme_table_matches() -> None:
    """Each row of the README's table: a method (or `Service.*`) and its callers."""
    text = README.read_text()
    section = text.split("### Who may do what", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([\w.*]+)` \| ([^|]+) \|", section, re.MULTILINE)
    documented = {name: {c.strip() for c in callers.split(",")} for name, callers in rows}
    words = {"clients": CLIENTS, "enabled workers": WORKERS, "admin": {"admin"}}
    for name, allowed in ALLOWED.items():
        row = documented.get(name) or documented.get(name.split(".")[0] + ".*")
        assert row is not None, f"{name} is not in the README's table"
        expected: set[str] = set()
        for word in row:
            expected |= EVERYONE if word == "anyone" else set(words[word])
        assert expected == set(allowed), name


async def callers(harness: Harness) -> dict[str, tuple[tuple[str, str], ...]]:
    tokens = harness.running.scheduler.tokens
    workers = harness.running.scheduler.workers
    revoked, revoked_secret = await tokens.create(Role.SUBMIT, "revoked")
    await tokens.revoke(revoked.id)
    _, expired_secret = await tokens.create(Role.SUBMIT, "expired", ttl_seconds=0.001)
    _, activation = await tokens.create(Role.WORKER_ACTIVATION, "activation")
    _, used = await tokens.create(Role.WORKER_ACTIVATION, "used")
    await workers.register("activated", new_token(), used)
    found = {"anonymous": (), "garbage": bearer_metadata("ty_garbage")}
    for name, secret in [
        ("revoked", revoked_secret),
        ("expired", expired_secret),
        ("activation", activation),
        ("used-activation", used),
    ]:
        found[name] = bearer_metadata(secret)
    found["submit"], found["admin"] = harness.submitter, harness.admin
    for name, enabled in [("worker", True), ("new-worker", False), ("disabled-worker", True)]:
        client = await harness.new_worker(name, enable=enabled)
        found[name] = client.metadata
    await workers.change("disabled-worker", enabled=False)
    found["not-bearer"] = (("authorization", "Basic " + harness.admin[0][1].split()[1]),)
    revoked_admin, revoked_admin_secret = await tokens.create(Role.ADMIN, "revoked admin")
    await tokens.revoke(revoked_admin.id)
    found["revoked-admin"] = bearer_metadata(revoked_admin_secret)
    await asyncio.sleep(0.01)  # the expired token's TTL
    return found


async def attempt(harness: Harness, method: MethodDescriptor, metadata: Any) -> grpc.StatusCode:
    """Call `method` with a harmless request; the code it ends with, or OK
    once it streams (a stream that is admitted may run on)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    request = request_class()
    if method.name == "Session":
        hello = workers_pb2.WorkerHello(slots=1, protocol_version=PROTOCOL_VERSION)
        request = workers_pb2.SessionRequest(hello=hello)
    serialize, parse = request_class.SerializeToString, lambda data: data

    async def one() -> AsyncIterator[Any]:
        yield request
        await asyncio.sleep(0.3)

    channel = harness.channel
    try:
        if method.client_streaming and method.server_streaming:
            call: Any = channel.stream_stream(path, serialize, parse)(one(), metadata=metadata)
            await asyncio.wait_for(anext(aiter(call)), 2)
            call.cancel()
        elif method.client_streaming:
            await channel.stream_unary(path, serialize, parse)(one(), metadata=metadata)
        elif method.server_streaming:
            call = channel.unary_stream(path, serialize, parse)(request, metadata=metadata)
            with contextlib.suppress(TimeoutError, StopAsyncIteration):
                await asyncio.wait_for(anext(aiter(call)), 0.3)
            call.cancel()
        else:
            await channel.unary_unary(path, serialize, parse)(request, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        reason = rpc_status.from_rpc_error(error).reason
        refused = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
        if error.code() in refused and reason in ACCESS_REASONS:
            return error.code()
        return grpc.StatusCode.OK
    return grpc.StatusCode.OK


async def test_the_matrix_holds(harness: Harness) -> None:
    kinds = await callers(harness)
    assert set(kinds) == EVERYONE
    wrong = []
    for method in methods():
        for caller, metadata in kinds.items():
            code = await attempt(harness, method, metadata)
            admitted = code is grpc.StatusCode.OK
            if admitted != (caller in ALLOWED[key(method)]):
                wrong.append(f"{key(method)} by {caller}: {code.name}")
    assert wrong == []


# -- Across tenants ----------------------------------------------------------


@dataclass(frozen=True)
class Theirs:
    """Objects of tenant team-a, which a team-b token tries to reach."""

    request: str
    artifact: str
    #: An artifact whose file `f` has not arrived yet.
    upload: str


Metadata = tuple[tuple[str, str], ...]
Probe = Callable[[Harness, Theirs, Metadata], Awaitable[None]]
wr = work_requests_pb2
art = artifacts_pb2


async def _finish(call: Any) -> None:
    """Await a unary call, or read a stream to its end."""
    if hasattr(call, "__aiter__"):
        async for _ in call:
            pass
    else:
        await call


async def not_found(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _finish(call)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value


async def with_their_input(harness: Harness, theirs: Theirs, who: Metadata) -> None:
    data = json.dumps({"inputs": [{"artifact": theirs.artifact}]})
    request = wr.SubmitRequest(task_name="noop", task_data_json=data)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.work_requests.Submit(request, metadata=who)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # as for no such artifact
    batch = await harness.work_requests.BatchSubmit(
        wr.BatchSubmitRequest(requests=[request]), metadata=who
    )
    assert batch.results[0].problem.reason == "INPUT_NOT_FOUND"
    streamed = harness.work_requests.SubmitStream(
        iter([wr.SubmitStreamRequest(request=request)]), metadata=who
    )
    assert [a.problem.reason async for a in streamed] == ["INPUT_NOT_FOUND"]
    for waiting in (  # their request, waited for or taken from, does not exist
        wr.SubmitRequest(task_name="noop", after=[wr.Dependency(on=theirs.request)]),
        wr.SubmitRequest(
            task_name="noop", task_data_json=json.dumps({"inputs": [{"request": theirs.request}]})
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.work_requests.Submit(waiting, metadata=who)
        refused = rpc_status.from_rpc_error(caught.value)
        assert (caught.value.code(), refused.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "DEPENDENCY_NOT_FOUND",
        )


async def listed_without(harness: Harness, theirs: Theirs, who: Metadata) -> None:
    listed = await harness.work_requests.List(wr.ListRequest(), metadata=who)
    assert theirs.request not in {w.id for w in listed.work_requests}
    named = await harness.artifacts.ListArtifacts(
        art.ListArtifactsRequest(work_request_id=theirs.request), metadata=who
    )
    everything = await harness.artifacts.ListArtifacts(art.ListArtifactsRequest(), metadata=who)
    assert theirs.artifact not in {a.id for a in [*named.artifacts, *everything.artifacts]}


async def watched_without(harness: Harness, theirs: Theirs, who: Metadata) -> None:
    watch = harness.work_requests.Watch(wr.WatchRequest(), metadata=who)
    changes = aiter(watch)
    await harness.work_requests.Abort(wr.AbortRequest(id=theirs.request), metadata=harness.admin)
    mine = await harness.work_requests.Submit(wr.SubmitRequest(task_name="noop"), metadata=who)
    assert (await anext(changes)).work_request.id == mine.work_request.id  # not their abort
    watch.cancel()


def _upload(theirs: Theirs) -> AsyncIterator[art.UploadFileRequest]:
    async def chunks() -> AsyncIterator[art.UploadFileRequest]:
        yield art.UploadFileRequest(artifact_id=theirs.upload, path="f", data=b"x")

    return chunks()


ACROSS: dict[str, Probe] = {
    "WorkRequestService.Submit": with_their_input,
    "WorkRequestService.BatchSubmit": with_their_input,
    "WorkRequestService.SubmitStream": with_their_input,
    "WorkRequestService.Get": lambda h, t, m: not_found(
        h.work_requests.Get(wr.GetRequest(id=t.request), metadata=m)
    ),
    "WorkRequestService.List": listed_without,
    "WorkRequestService.Watch": watched_without,
    "WorkRequestService.Abort": lambda h, t, m: not_found(
        h.work_requests.Abort(wr.AbortRequest(id=t.request), metadata=m)
    ),
    "WorkRequestService.Retry": lambda h, t, m: not_found(
        h.work_requests.Retry(wr.RetryRequest(id=t.request), metadata=m)
    ),
    "WorkRequestService.Explain": lambda h, t, m: not_found(
        h.work_requests.Explain(wr.ExplainRequest(id=t.request), metadata=m)
    ),
    "WorkRequestService.Logs": lambda h, t, m: not_found(
        h.work_requests.Logs(wr.LogsRequest(id=t.request), metadata=m)
    ),
    "WorkRequestService.GetPipeline": lambda h, t, m: not_found(
        h.work_requests.GetPipeline(wr.GetPipelineRequest(id=t.request), metadata=m)
    ),
    "OperatorService.ListTasks": lambda h, t, m: asyncio.sleep(0),  # no tenant's objects
    "ArtifactService.CreateArtifact": lambda h, t, m: not_found(
        h.artifacts.CreateArtifact(
            art.CreateArtifactRequest(category="x", work_request_id=t.request), metadata=m
        )
    ),
    "ArtifactService.UploadFile": lambda h, t, m: not_found(
        h.artifacts.UploadFile(_upload(t), metadata=m)
    ),
    "ArtifactService.QueryUploadStatus": lambda h, t, m: not_found(
        h.artifacts.QueryUploadStatus(
            art.QueryUploadStatusRequest(artifact_id=t.upload, path="f"), metadata=m
        )
    ),
    "ArtifactService.GetArtifact": lambda h, t, m: not_found(
        h.artifacts.GetArtifact(art.GetArtifactRequest(artifact_id=t.artifact), metadata=m)
    ),
    "ArtifactService.ListArtifacts": listed_without,
    "ArtifactService.DownloadArtifact": lambda h, t, m: not_found(
        h.artifacts.DownloadArtifact(
            art.DownloadArtifactRequest(artifact_id=t.artifact), metadata=m
        )
    ),
}


def test_every_client_rpc_is_checked_across_tenants() -> None:
    clients = sorted(
        name for name, allowed in ALLOWED.items() if "submit" in allowed and allowed != EVERYONE
    )
    assert clients == sorted(ACROSS)


async def tenant_token(harness: Harness, tenant: str) -> Metadata:
    _, secret = await harness.running.scheduler.tokens.create(Role.SUBMIT, tenant=tenant)
    return bearer_metadata(secret)


async def test_another_tenants_objects_do_not_exist_for_any_rpc(
    harness: Harness, tmp_path: Path
) -> None:
    a, b = await tenant_token(harness, "team-a"), await tenant_token(harness, "team-b")
    submitted = await harness.work_requests.Submit(
        wr.SubmitRequest(task_name="noop", task_data_json="{}"), metadata=a
    )
    (tmp_path / "f").write_bytes(b"theirs")
    artifact = await transfer.upload(
        harness.artifacts, a, category="x", files={"f": tmp_path / "f"},
        work_request_id=submitted.work_request.id,
    )  # fmt: skip
    entry = artifacts_pb2.ArtifactFile(path="f", size=2, sha256=hashlib.sha256(b"no").hexdigest())
    pending = await harness.artifacts.CreateArtifact(
        art.CreateArtifactRequest(category="x", files=[entry]), metadata=a
    )
    theirs = Theirs(submitted.work_request.id, artifact.id, pending.artifact.id)
    for name, probe in ACROSS.items():
        try:
            await probe(harness, theirs, b)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from error
