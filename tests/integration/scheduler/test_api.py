"""The client and operator APIs against a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from taskyard.rpc import status as rpc_status
from taskyard.v1 import operator_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.scheduler.harness import Harness, start_harness, stop_harness


async def count(harness: Harness) -> int:
    listed = await harness.work_requests.List(pb.ListRequest(), metadata=harness.submitter)
    return len(listed.work_requests)


async def test_invalid_task_data_gives_field_violations_and_stores_nothing(
    harness: Harness,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.submit("noop", {"sleep": -1, "result": "yes", "extra": 1})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    failure = rpc_status.from_rpc_error(caught.value)  # reads ErrorInfo and BadRequest
    assert failure.reason == "TASK_DATA_INVALID"
    assert sorted(v.field for v in failure.violations) == [
        "task_data_json",
        "task_data_json.result",
        "task_data_json.sleep",
    ]
    assert await count(harness) == 0


@pytest.mark.parametrize(
    ("task", "data", "reason", "field"),
    [
        ("nope", "{}", "UNKNOWN_TASK", "task_name"),
        ("noop", "{not json", "TASK_DATA_INVALID", "task_data_json"),
        ("noop", "[1, 2]", "TASK_DATA_INVALID", "task_data_json"),
    ],
)
async def test_other_invalid_submissions(
    harness: Harness, task: str, data: str, reason: str, field: str
) -> None:
    request = pb.SubmitRequest(task_name=task, task_data_json=data)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.work_requests.Submit(request, metadata=harness.submitter)
    failure = rpc_status.from_rpc_error(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == reason
    assert [v.field for v in failure.violations] == [field]
    assert await count(harness) == 0


async def test_task_data_text_is_kept_exactly_as_sent(harness: Harness) -> None:
    text = '{ "result" : true,"sleep":0.50 }'
    request = pb.SubmitRequest(task_name="noop", task_data_json=text)
    submitted = await harness.work_requests.Submit(request, metadata=harness.submitter)
    assert (await harness.get(submitted.work_request.id)).task_data_json == text


async def test_an_idempotency_key_returns_the_same_request(harness: Harness) -> None:
    request = pb.SubmitRequest(task_name="noop", idempotency_key="build-42")
    first = await harness.work_requests.Submit(request, metadata=harness.submitter)
    again = await harness.work_requests.Submit(request, metadata=harness.submitter)
    assert (first.created, again.created) == (True, False)
    assert first.work_request.id == again.work_request.id
    assert await count(harness) == 1
    different = pb.SubmitRequest(task_name="noop", priority=9, idempotency_key="build-42")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.work_requests.Submit(different, metadata=harness.submitter)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_concurrent_submits_with_one_key_create_one_request(harness: Harness) -> None:
    request = pb.SubmitRequest(task_name="noop", idempotency_key="once")
    responses = await asyncio.gather(
        *(harness.work_requests.Submit(request, metadata=harness.submitter) for _ in range(20))
    )
    assert len({r.work_request.id for r in responses}) == 1
    assert sum(r.created for r in responses) == 1


async def test_batch_submit_reports_each_item(harness: Harness) -> None:
    batch = pb.BatchSubmitRequest(
        requests=[
            pb.SubmitRequest(task_name="noop"),
            pb.SubmitRequest(task_name="noop", task_data_json='{"sleep": -5}'),
            pb.SubmitRequest(task_name="nope"),
            pb.SubmitRequest(task_name="noop", priority=2),
        ]
    )
    response = await harness.work_requests.BatchSubmit(batch, metadata=harness.submitter)
    kinds = [r.WhichOneof("outcome") for r in response.results]
    assert kinds == ["work_request", "problem", "problem", "work_request"]
    assert response.results[1].problem.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert response.results[1].problem.field_violations[0].field == "task_data_json.sleep"
    assert response.results[2].problem.reason == "UNKNOWN_TASK"
    assert await count(harness) == 2


async def test_list_filters_and_pages(harness: Harness) -> None:
    ids = [await harness.submit("noop", priority=n) for n in range(5)]
    await harness.work_requests.Abort(pb.AbortRequest(id=ids[0]), metadata=harness.submitter)
    seen: list[str] = []
    token = ""
    while True:
        page = await harness.work_requests.List(
            pb.ListRequest(page_size=2, page_token=token), metadata=harness.submitter
        )
        seen += [w.id for w in page.work_requests]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    aborted = await harness.work_requests.List(
        pb.ListRequest(states=[pb.WORK_REQUEST_STATE_ABORTED]), metadata=harness.submitter
    )
    assert [w.id for w in aborted.work_requests] == [ids[0]]


async def test_watch_streams_every_state_change_until_the_end(harness: Harness) -> None:
    work_request_id = await harness.submit()
    stream = harness.work_requests.Watch(
        pb.WatchRequest(id=work_request_id), metadata=harness.submitter
    )
    states: list[int] = []

    async def follow() -> None:
        async for change in stream:
            states.append(change.work_request.state)

    following = asyncio.create_task(follow())
    worker = await harness.new_worker()
    await worker.connect()
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    worker.completed(lease, workers_pb2.WORK_OUTCOME_FAILURE)
    await worker.expect("ack")
    await asyncio.wait_for(following, 5)
    assert states == [
        pb.WORK_REQUEST_STATE_PENDING,
        pb.WORK_REQUEST_STATE_ASSIGNED,
        pb.WORK_REQUEST_STATE_RUNNING,
        pb.WORK_REQUEST_STATE_COMPLETED,
    ]
    retried = await harness.work_requests.Retry(
        pb.RetryRequest(id=work_request_id), metadata=harness.submitter
    )
    assert (retried.work_request.id, retried.work_request.attempt) == (work_request_id, 2)
    assert (await worker.expect("assignment")).lease.attempt == 2
    await worker.disconnect()


async def test_retry_refuses_what_succeeded_or_is_still_pending(harness: Harness) -> None:
    work_request_id = await harness.submit()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.work_requests.Retry(
            pb.RetryRequest(id=work_request_id), metadata=harness.submitter
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_unknown_ids_are_not_found(harness: Harness) -> None:
    for call in (
        harness.work_requests.Get(pb.GetRequest(id="missing"), metadata=harness.submitter),
        harness.work_requests.Abort(pb.AbortRequest(id="missing"), metadata=harness.submitter),
        harness.operator.EnableWorker(
            operator_pb2.EnableWorkerRequest(name="missing"), metadata=harness.admin
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_operator_controls_matching(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    await harness.operator.SetWorkerTaskFilter(
        operator_pb2.SetWorkerTaskFilterRequest(name=worker.name, denied_tasks=["noop"]),
        metadata=harness.admin,
    )
    work_request_id = await harness.submit()
    explained = await harness.work_requests.Explain(
        pb.ExplainRequest(id=work_request_id), metadata=harness.submitter
    )
    assert explained.workers[0].eligibility == pb.ELIGIBILITY_DENY_LISTED
    await harness.operator.SetWorkerTaskFilter(
        operator_pb2.SetWorkerTaskFilterRequest(name=worker.name), metadata=harness.admin
    )
    assert (await worker.expect("assignment")).lease.work_request_id == work_request_id
    listed = await harness.operator.ListWorkers(
        operator_pb2.ListWorkersRequest(), metadata=harness.admin
    )
    [seen] = listed.workers
    assert (seen.name, seen.enabled, seen.connected, len(seen.running)) == (
        worker.name,
        True,
        True,
        1,
    )
    assert json.loads(seen.dynamic_metadata_json)["noop:version"] == 1
    await worker.disconnect()


async def test_static_metadata_overrides_dynamic_metadata(harness: Harness) -> None:
    worker = await harness.new_worker()
    await worker.connect(metadata={"noop:version": 0})
    await harness.submit()
    await harness.operator.SetWorkerMetadata(
        operator_pb2.SetWorkerMetadataRequest(
            name=worker.name, static_metadata_json='{"noop:version": 1}'
        ),
        metadata=harness.admin,
    )
    await worker.expect("assignment")
    await worker.disconnect()


async def test_health_and_reflection_are_served(harness: Harness) -> None:
    # The standard services' stubs are typed for sync channels only.
    health: Any = health_pb2_grpc.HealthStub(harness.channel)
    for service in ("", "taskyard.v1.WorkRequestService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(cast(Any, harness.channel))
    question = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = [a async for a in reflection.ServerReflectionInfo(iter([question]))]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"taskyard.v1.WorkRequestService", "taskyard.v1.WorkerService"} <= names


async def test_acknowledged_requests_survive_a_restart(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    ids = [await first.submit("noop", {"sleep": n}) for n in range(10)]
    await stop_harness(first)
    second = await start_harness(tmp_path)
    try:
        for work_request_id in ids:
            assert (await second.get(work_request_id)).state == pb.WORK_REQUEST_STATE_PENDING
        worker = await second.new_worker()
        await worker.connect(slots=10)
        pushed = {(await worker.expect("assignment")).lease.work_request_id for _ in ids}
        assert pushed == set(ids)
        await worker.disconnect()
    finally:
        await stop_harness(second)


async def test_an_operator_can_ask_a_worker_for_fresh_metadata(harness: Harness) -> None:
    worker = await harness.new_worker()
    refresh = operator_pb2.RefreshWorkerMetadataRequest(name=worker.name)
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # not connected yet
        await harness.operator.RefreshWorkerMetadata(refresh, metadata=harness.admin)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await worker.connect(metadata={"noop:version": 0})
    await harness.operator.RefreshWorkerMetadata(refresh, metadata=harness.admin)
    await worker.expect("metadata_refresh")
    worker.send(metadata_update=workers_pb2.MetadataUpdate(metadata_json='{"noop:version": 1}'))
    work_request_id = await harness.submit()
    lease = (await worker.expect("assignment")).lease
    assert lease.work_request_id == work_request_id  # the new metadata made it eligible
    await worker.disconnect()
