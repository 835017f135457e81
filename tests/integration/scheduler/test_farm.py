"""Two schedulers on one PostgreSQL database: each serves every request,
hears what the other commits, and no request is assigned twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from taskyard.rpc import transfer
from taskyard.rpc.credentials import bearer_metadata
from taskyard.scheduler.service.maintenance import FencedOut
from taskyard.v1 import artifacts_pb2 as art_pb
from taskyard.v1 import operator_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.postgres import fresh_database
from tests.integration.scheduler.harness import (
    Harness,
    SessionClient,
    completion,
    start_harness,
    stop_harness,
)
from tests.integration.scheduler.test_task_logs import output, size

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two schedulers of one database, sharing a blob directory."""
    shared = str(tmp_path / "shared")
    with fresh_database() as url:
        a = await start_harness(tmp_path / "a", database=url, blob_dir=shared)
        b = await start_harness(tmp_path / "b", database=url, blob_dir=shared)
        try:
            yield a, b
        finally:
            await stop_harness(b)
            await stop_harness(a)


async def eventually(call: object, timeout: float = 10.0) -> object:
    """The first answer of a call that another scheduler makes possible."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()  # type: ignore[operator]
            except grpc.aio.AioRpcError as error:
                if error.code() not in {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND}:
                    raise
            await asyncio.sleep(0.05)


async def worker_on(harness: Harness, other: Harness, name: str, slots: int = 1) -> SessionClient:
    """A worker registered and enabled through `other`, connected to `harness`."""
    client = SessionClient(other, name)
    await client.register()
    await other.operator.EnableWorker(
        operator_pb2.EnableWorkerRequest(name=client.name), metadata=other.admin
    )
    client.harness = harness
    await eventually(lambda: client.connect(slots=slots))
    return client


async def succeed_each(client: SessionClient, seen: list[str]) -> None:
    """Play a worker that ends every assignment with success, noting each in `seen`."""
    while True:
        kind, item = await client.received.get()
        if kind == "assignment":
            seen.append(item.lease.work_request_id)
            client.report(completion(item.lease, workers_pb2.WORK_OUTCOME_SUCCESS))


async def test_a_request_submitted_on_one_runs_on_a_worker_of_the_other(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    worker = await worker_on(b, a, "w1")
    request = await a.submit("noop")
    watched = asyncio.create_task(a.wait_for_state(request, pb.WORK_REQUEST_STATE_COMPLETED))
    assignment = await worker.expect("assignment")
    assert assignment.lease.work_request_id == request
    worker.started(assignment.lease)
    worker.completed(assignment.lease, workers_pb2.WORK_OUTCOME_SUCCESS)
    await worker.expect("ack")
    done = await watched  # the watch on the other scheduler saw it end
    assert (done.worker_name, done.result) == ("w1", pb.WORK_REQUEST_RESULT_SUCCESS)
    await a.running.scheduler.maintenance.renew()  # the next beat: b is alive, w1 is on it
    listed = await a.operator.ListWorkers(operator_pb2.ListWorkersRequest(), metadata=a.admin)
    [seen] = listed.workers
    assert (seen.name, seen.connected) == ("w1", True)
    assert seen.scheduler.startswith(f"{b.address} (")
    await worker.disconnect()


async def test_tokens_and_aborts_cross_between_them(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    created = await a.operator.CreateToken(
        operator_pb2.CreateTokenRequest(role=operator_pb2.TOKEN_ROLE_SUBMIT), metadata=a.admin
    )
    listed = await eventually(
        lambda: b.work_requests.List(pb.ListRequest(), metadata=bearer_metadata(created.secret))
    )
    assert isinstance(listed, pb.ListResponse)
    worker = await worker_on(b, a, "w1")
    request = await a.submit("noop", {"sleep": 60})
    assignment = await worker.expect("assignment")
    worker.started(assignment.lease)
    await a.work_requests.Abort(pb.AbortRequest(id=request), metadata=a.submitter)
    abort = await worker.expect("abort")  # asked on one, pushed by the other
    assert abort.lease == assignment.lease
    worker.completed(assignment.lease, workers_pb2.WORK_OUTCOME_ABORTED)
    assert (await worker.expect("ack")).lease == assignment.lease
    await worker.disconnect()


async def test_racing_schedulers_assign_each_request_once(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    on_a, on_b = await worker_on(a, a, "wa"), await worker_on(b, a, "wb")
    requests = {await (a if n % 2 else b).submit("noop") for n in range(40)}
    seen: list[str] = []

    workers = [asyncio.create_task(succeed_each(c, seen)) for c in (on_a, on_b)]
    async with asyncio.timeout(60):
        while set(seen) != requests:
            await asyncio.sleep(0.05)
    for task in workers:
        task.cancel()
    assert sorted(seen) == sorted(requests)  # every one once, none twice
    for client in (on_a, on_b):
        await client.disconnect()


@pytest.fixture
async def quick_pair(tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two schedulers with a short maintenance lease; the first leads."""
    with fresh_database() as url:
        a = await start_harness(tmp_path / "a", database=url, leader_ttl=1.0)
        b = await start_harness(tmp_path / "b", database=url, leader_ttl=1.0)
        try:
            yield a, b
        finally:
            await stop_harness(b)
            await stop_harness(a)


async def until(condition: object, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_one_runs_maintenance_and_expires_a_lost_workers_leases_held_elsewhere(
    quick_pair: tuple[Harness, Harness],
) -> None:
    a, b = quick_pair
    leader, other = a.running.scheduler.maintenance, b.running.scheduler.maintenance
    assert (leader.leading, other.leading) == (True, False)
    worker = await worker_on(b, a, "w1")
    request = await a.submit("noop")
    assignment = await worker.expect("assignment")
    worker.started(assignment.lease)
    await a.wait_for_state(request, pb.WORK_REQUEST_STATE_RUNNING)
    await worker.disconnect()  # its session was on b; a, which leads, expires its lease
    back = await a.wait_for_state(request, pb.WORK_REQUEST_STATE_PENDING)
    assert back.attempt == 2


async def test_another_takes_over_and_a_former_leaders_writes_are_refused(
    quick_pair: tuple[Harness, Harness],
) -> None:
    a, b = quick_pair
    former, other = a.running.scheduler.maintenance, b.running.scheduler.maintenance
    assert former.leading
    await former.stop()  # as if paused: it renews no more, and still believes it leads
    former.term = 1
    await until(lambda: other.leading)  # within the lease's TTL and one renewal
    assert other.term == 2
    with pytest.raises(FencedOut):
        await a.running.scheduler.core.db.run(former.guard)
    assert former.refused == 1


async def test_an_upload_begun_on_one_ends_on_the_other_and_either_serves_it(
    pair: tuple[Harness, Harness], tmp_path: Path
) -> None:
    a, b = pair
    content = b"x" * (3 * 1024 * 1024 + 5)  # four chunks
    (tmp_path / "big.bin").write_bytes(content)
    entry = transfer.describe_file(tmp_path / "big.bin", "big.bin")
    created = await a.artifacts.CreateArtifact(
        art_pb.CreateArtifactRequest(category="data", files=[entry]), metadata=a.submitter
    )
    artifact_id = created.artifact.id
    first = art_pb.UploadFileRequest(
        artifact_id=artifact_id, path="big.bin", offset=0, data=content[: 1024 * 1024]
    )
    await a.artifacts.UploadFile(aiter_of(first), metadata=a.submitter)  # then a goes away
    status = await b.artifacts.QueryUploadStatus(  # the same caller, through the other
        art_pb.QueryUploadStatusRequest(artifact_id=artifact_id, path="big.bin"),
        metadata=a.submitter,
    )
    assert (status.committed_size, status.complete) == (1024 * 1024, False)
    mib = 1024 * 1024
    rest = [
        art_pb.UploadFileRequest(
            artifact_id=artifact_id, path="big.bin", offset=start,
            data=content[start : start + mib], finish_write=start + mib >= len(content),
        )
        for start in range(mib, len(content), mib)
    ]  # fmt: skip
    await b.artifacts.UploadFile(aiter_of(*rest), metadata=a.submitter)
    written = await transfer.download(a.artifacts, a.submitter, artifact_id, tmp_path / "out")
    assert written[0].read_bytes() == content


async def aiter_of(*items: art_pb.UploadFileRequest) -> AsyncIterator[art_pb.UploadFileRequest]:
    for item in items:
        yield item


async def test_a_follower_on_one_gets_output_sent_to_the_other(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    worker = await worker_on(b, a, "w1")
    request = await a.submit("noop", {"sleep": 30})
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    follow = a.work_requests.Logs(pb.LogsRequest(id=request, follow=True), metadata=a.submitter)
    lines = aiter(follow)
    worker.send(output=output(lease, 0, "one\n"))
    assert (await anext(lines)).data == b"one\n"  # sent to b, followed on a, live
    worker.send(output=output(lease, size("one\n"), "two\n", end=True))
    assert (await anext(lines)).data == b"two\n"
    worker.completed(lease, workers_pb2.WORK_OUTCOME_SUCCESS)
    assert [chunk async for chunk in follow] == []  # sealed: the follow ends
    await worker.disconnect()


async def test_a_tenants_quota_set_on_one_holds_on_the_other(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    await a.operator.SetTenant(
        operator_pb2.SetTenantRequest(name="team-a", weight=1.0, max_running=1), metadata=a.admin
    )
    created = await a.operator.CreateToken(
        operator_pb2.CreateTokenRequest(role=operator_pb2.TOKEN_ROLE_SUBMIT, tenant="team-a"),
        metadata=a.admin,
    )
    team = bearer_metadata(created.secret)
    # Announced in order: once b knows the token, it knows the quota set before it.
    await eventually(lambda: b.work_requests.List(pb.ListRequest(), metadata=team))
    worker = await worker_on(b, a, "w1", slots=2)
    submitted = [
        (await a.work_requests.Submit(pb.SubmitRequest(task_name="noop"), metadata=team))
        for _ in range(2)
    ]
    first = await worker.expect("assignment")  # b assigns what a took in
    assert first.lease.work_request_id == submitted[0].work_request.id
    held = submitted[1].work_request.id
    explained = await b.work_requests.Explain(pb.ExplainRequest(id=held), metadata=team)
    assert "team-a is at its limit of 1 running" in explained.summary
    worker.completed(first.lease, workers_pb2.WORK_OUTCOME_SUCCESS)
    await worker.expect("ack")
    assert (await worker.expect("assignment")).lease.work_request_id == held
    await worker.disconnect()


async def test_either_scheduler_moves_a_pipeline_on(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    nodes = [
        pb.SubmitRequest(task_name="noop", ref="first"),
        pb.SubmitRequest(task_name="noop", ref="then", after=[pb.Dependency(on="first")]),
        pb.SubmitRequest(task_name="noop", ref="last", after=[pb.Dependency(on="then")]),
    ]
    submitted = await a.work_requests.BatchSubmit(
        pb.BatchSubmitRequest(requests=nodes), metadata=a.submitter
    )
    ids = [r.work_request.id for r in submitted.results]
    on_b = await worker_on(b, a, "wb")  # only b has a worker: b ends each, and releases the next
    for expected in ids:
        assignment = await on_b.expect("assignment")
        assert assignment.lease.work_request_id == expected
        on_b.completed(assignment.lease, workers_pb2.WORK_OUTCOME_SUCCESS)
        await on_b.expect("ack")
    done = await a.wait_for_state(ids[-1], pb.WORK_REQUEST_STATE_COMPLETED)
    assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS
    await on_b.disconnect()


async def test_parents_ending_together_on_two_schedulers_release_their_child_once(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    parents = [pb.SubmitRequest(task_name="noop", ref=f"p{i}") for i in range(20)]
    child = pb.SubmitRequest(
        task_name="noop", ref="child", after=[pb.Dependency(on=p.ref) for p in parents]
    )
    submitted = await a.work_requests.BatchSubmit(
        pb.BatchSubmitRequest(requests=[*parents, child]), metadata=a.submitter
    )
    child_id = submitted.results[-1].work_request.id
    workers = [await worker_on(a, a, "wa", slots=10), await worker_on(b, a, "wb", slots=10)]
    seen: list[str] = []

    tasks = [asyncio.create_task(succeed_each(c, seen)) for c in workers]
    done = await a.wait_for_state(child_id, pb.WORK_REQUEST_STATE_COMPLETED, timeout=30)
    for task in tasks:
        task.cancel()
    assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS
    assert seen.count(child_id) == 1
    for client in workers:
        await client.disconnect()
