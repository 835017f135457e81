"""Two teams on one scheduler: what each sees, fair share, quotas, reservations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from taskyard.errors import NotFoundError
from taskyard.rpc import status as rpc_status
from taskyard.rpc import transfer
from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import artifacts_pb2 as art_pb
from taskyard.v1 import operator_pb2 as op_pb
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import workers_pb2
from tests.integration.scheduler.harness import Harness

Metadata = tuple[tuple[str, str], ...]


async def token_of(harness: Harness, tenant: str) -> Metadata:
    created = await harness.operator.CreateToken(
        op_pb.CreateTokenRequest(role=op_pb.TOKEN_ROLE_SUBMIT, tenant=tenant),
        metadata=harness.admin,
    )
    return bearer_metadata(created.secret)


async def submit(harness: Harness, who: Metadata, **fields: Any) -> pb.WorkRequest:
    request = pb.SubmitRequest(task_name="noop", task_data_json="{}", **fields)
    response = await harness.work_requests.Submit(request, metadata=who)
    return response.work_request


async def failure(call: Any) -> tuple[grpc.StatusCode, str, str]:
    """The code, reason and message a call failed with."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        refused = rpc_status.from_rpc_error(error)
        return error.code(), refused.reason, refused.message
    raise AssertionError("the call succeeded")


@pytest.fixture
async def teams(harness: Harness) -> tuple[Metadata, Metadata]:
    return await token_of(harness, "team-a"), await token_of(harness, "team-b")


async def test_another_tenants_request_does_not_exist(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, b = teams
    theirs = await submit(harness, a)
    assert theirs.tenant == "team-a"
    stub = harness.work_requests
    for call in (
        stub.Get(pb.GetRequest(id=theirs.id), metadata=b),
        stub.Explain(pb.ExplainRequest(id=theirs.id), metadata=b),
        stub.Abort(pb.AbortRequest(id=theirs.id), metadata=b),
        stub.Retry(pb.RetryRequest(id=theirs.id), metadata=b),
    ):
        code, reason, _ = await failure(call)
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "WORK_REQUEST_NOT_FOUND")
    for stream in (
        stub.Watch(pb.WatchRequest(id=theirs.id), metadata=b),
        stub.Logs(pb.LogsRequest(id=theirs.id), metadata=b),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stub.List(pb.ListRequest(), metadata=b)
    assert list(listed.work_requests) == []
    other = await stub.List(pb.ListRequest(tenant="team-a"), metadata=b)
    assert list(other.work_requests) == []  # naming another tenant shows nothing
    mine = await stub.List(pb.ListRequest(), metadata=a)
    assert [w.id for w in mine.work_requests] == [theirs.id]
    everyone = await stub.List(pb.ListRequest(tenant="team-a"), metadata=harness.admin)
    assert [w.id for w in everyone.work_requests] == [theirs.id]  # admins see every tenant


async def test_a_watch_sees_only_its_tenants_changes(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, b = teams
    watch = harness.work_requests.Watch(pb.WatchRequest(), metadata=b)
    seen = aiter(watch)
    mine = await submit(harness, b)  # the watch is open once it sees this
    assert (await anext(seen)).work_request.id == mine.id
    await submit(harness, a)  # not seen
    last = await submit(harness, b)
    assert (await anext(seen)).work_request.id == last.id
    watch.cancel()


async def test_idempotency_keys_are_each_tenants_own(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, b = teams
    first = await submit(harness, a, idempotency_key="build-1")
    second = await submit(harness, b, idempotency_key="build-1")
    assert first.id != second.id
    again = await harness.work_requests.Submit(
        pb.SubmitRequest(task_name="noop", task_data_json="{}", idempotency_key="build-1"),
        metadata=a,
    )
    assert (again.work_request.id, again.created) == (first.id, False)


async def test_artifacts_stay_in_their_tenant_unless_an_admin_shares_them(
    harness: Harness, teams: tuple[Metadata, Metadata], tmp_path: Path
) -> None:
    a, b = teams
    (tmp_path / "key").write_bytes(b"release key")
    key = {"k": tmp_path / "key"}
    secret = await transfer.upload(harness.artifacts, a, category="x", files=key)
    assert secret.tenant == "team-a"
    shared = await transfer.upload(harness.artifacts, harness.admin, category="env", files=key)
    assert shared.tenant == ""
    code, _, _ = await failure(
        harness.artifacts.GetArtifact(art_pb.GetArtifactRequest(artifact_id=secret.id), metadata=b)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(NotFoundError):
        await transfer.download(harness.artifacts, b, secret.id, tmp_path / "out")
    listed = await harness.artifacts.ListArtifacts(art_pb.ListArtifactsRequest(), metadata=b)
    assert [x.id for x in listed.artifacts] == [shared.id]
    # Naming another tenant's artifact as an input: as if it did not exist.
    data = json.dumps({"inputs": [{"artifact": secret.id}]})
    code, _, message = await failure(
        harness.work_requests.Submit(
            pb.SubmitRequest(task_name="noop", task_data_json=data), metadata=b
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "no artifact" in message
    usable = json.dumps({"inputs": [{"artifact": shared.id}]})
    await harness.work_requests.Submit(
        pb.SubmitRequest(task_name="noop", task_data_json=usable), metadata=b
    )


async def test_tokens_belong_to_one_tenant(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, _ = teams
    code, reason, message = await failure(submit(harness, a, tenant="team-b"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "TENANT_NOT_ALLOWED")
    assert "team-a" in message
    on_behalf = await submit(harness, harness.admin, tenant="team-b")
    assert on_behalf.tenant == "team-b"
    code, reason, _ = await failure(submit(harness, harness.admin, tenant="nobody"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "TENANT_NOT_FOUND")
    for request in (
        op_pb.CreateTokenRequest(role=op_pb.TOKEN_ROLE_SUBMIT, tenant="Not A Name"),
        op_pb.CreateTokenRequest(role=op_pb.TOKEN_ROLE_ADMIN, tenant="team-a"),
    ):
        code, _, _ = await failure(harness.operator.CreateToken(request, metadata=harness.admin))
        assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_submit_past_max_pending_is_refused_saying_which_quota(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, b = teams
    await harness.operator.SetTenant(
        op_pb.SetTenantRequest(name="team-a", max_pending=2), metadata=harness.admin
    )
    first = await submit(harness, a, idempotency_key="k1")
    await submit(harness, a)
    code, reason, message = await failure(submit(harness, a))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TENANT_MAX_PENDING")
    assert "max_pending is 2" in message
    replay = await submit(harness, a, idempotency_key="k1")  # its first submit got in
    assert replay.id == first.id
    await submit(harness, b)  # another tenant is not held back
    listed = await harness.operator.ListTenants(op_pb.ListTenantsRequest(), metadata=harness.admin)
    by_name = {t.name: t for t in listed.tenants}
    assert (by_name["team-a"].pending, by_name["team-a"].max_pending) == (2, 2)
    assert by_name["team-b"].pending == 1


async def test_max_running_holds_a_tenant_back_and_explain_says_so(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, b = teams
    await harness.operator.SetTenant(
        op_pb.SetTenantRequest(name="team-a", max_running=1), metadata=harness.admin
    )
    worker = await harness.new_worker()
    await worker.connect(slots=3)
    held = [await submit(harness, a) for _ in range(3)]
    first = await worker.expect("assignment")
    theirs = await submit(harness, b)
    second = await worker.expect("assignment")
    assert (first.lease.work_request_id, second.lease.work_request_id) == (held[0].id, theirs.id)
    explained = await harness.work_requests.Explain(pb.ExplainRequest(id=held[1].id), metadata=a)
    assert "team-a is at its limit of 1 running" in explained.summary
    worker.completed(first.lease, workers_pb2.WORK_OUTCOME_SUCCESS)
    await worker.expect("ack")
    after = await worker.expect("assignment")  # a's slot came back
    assert after.lease.work_request_id == held[1].id
    await worker.disconnect()


async def test_a_reserved_worker_serves_only_its_tenants(
    harness: Harness, teams: tuple[Metadata, Metadata]
) -> None:
    a, b = teams
    worker = await harness.new_worker()
    await harness.operator.SetWorkerTenants(
        op_pb.SetWorkerTenantsRequest(name=worker.name, tenants=["team-b"]), metadata=harness.admin
    )
    await worker.connect(slots=2)
    waiting = await submit(harness, a)
    theirs = await submit(harness, b)
    assigned = await worker.expect("assignment")
    assert assigned.lease.work_request_id == theirs.id
    explained = await harness.work_requests.Explain(
        pb.ExplainRequest(id=waiting.id), metadata=harness.admin
    )
    [verdict] = explained.workers
    assert verdict.eligibility == pb.ELIGIBILITY_RESERVED
    assert "reserved for team-b" in verdict.detail
    code, _, _ = await failure(
        harness.operator.SetWorkerTenants(
            op_pb.SetWorkerTenantsRequest(name=worker.name, tenants=["nobody"]),
            metadata=harness.admin,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    await worker.disconnect()
