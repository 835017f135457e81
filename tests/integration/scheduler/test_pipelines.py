"""Requests that wait for others: blocked, released in the commit that ends
what they wait for, aborted when it fails, waiting again when it is retried."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from taskyard.rpc import status as rpc_status
from taskyard.rpc import transfer
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import workers_pb2
from tests.integration.scheduler.harness import (
    Harness,
    SessionClient,
    start_harness,
    stop_harness,
)

SUCCESS, FAILURE = workers_pb2.WORK_OUTCOME_SUCCESS, workers_pb2.WORK_OUTCOME_FAILURE
DONE = pb.DEPENDENCY_NEEDS_DONE


def after(*ids: str, needs: int = pb.DEPENDENCY_NEEDS_SUCCESS) -> list[pb.Dependency]:
    return [pb.Dependency(on=i, needs=needs) for i in ids]  # type: ignore[arg-type]


def node(ref: str, *waits: str, data: Any = None, **fields: Any) -> pb.SubmitRequest:
    return pb.SubmitRequest(
        task_name="noop", task_data_json=json.dumps(data or {}), ref=ref, after=after(*waits),
        **fields,
    )  # fmt: skip


async def pipeline(harness: Harness, *nodes: pb.SubmitRequest) -> dict[str, str]:
    """Submit `nodes` in one batch; their ids by ref."""
    response = await harness.work_requests.BatchSubmit(
        pb.BatchSubmitRequest(requests=nodes), metadata=harness.submitter
    )
    return {n.ref: r.work_request.id for n, r in zip(nodes, response.results, strict=True)}


async def run(worker: SessionClient, outcome: Any = SUCCESS) -> str:
    """Take the next assignment and end it with `outcome`; its request's id."""
    assignment = await worker.expect("assignment")
    worker.completed(assignment.lease, outcome)
    await worker.expect("ack")
    return str(assignment.lease.work_request_id)


async def refusal(call: Any) -> tuple[grpc.StatusCode, str, str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    status = rpc_status.from_rpc_error(caught.value)
    fields = [v.field for v in status.violations]
    return caught.value.code(), status.reason, status.message, fields


@pytest.fixture
async def worker(harness: Harness) -> SessionClient:
    client = await harness.new_worker()
    await client.connect()
    return client


async def test_a_chain_runs_in_order_each_released_by_the_end_of_the_last(
    harness: Harness, worker: SessionClient
) -> None:
    ids = await pipeline(harness, node("build"), node("test", "build"), node("publish", "test"))
    assert (await harness.get(ids["test"])).state == pb.WORK_REQUEST_STATE_BLOCKED
    explained = await harness.work_requests.Explain(
        pb.ExplainRequest(id=ids["publish"]), metadata=harness.submitter
    )
    assert [d.on for d in explained.waiting_for] == [ids["test"]]
    assert f"waits for the success of {ids['test']}" in explained.summary
    assert [await run(worker) for _ in range(3)] == [ids["build"], ids["test"], ids["publish"]]
    got = await harness.work_requests.Get(pb.GetRequest(id=ids["test"]), metadata=harness.submitter)
    assert ([d.on for d in got.after], list(got.dependents)) == ([ids["build"]], [ids["publish"]])
    shown = await harness.work_requests.GetPipeline(
        pb.GetPipelineRequest(id=ids["test"]), metadata=harness.submitter
    )
    assert [n.id for n in shown.nodes] == sorted(ids.values())
    assert (shown.done, shown.failed) == (True, 0)


async def test_a_failure_aborts_what_needs_it_and_releases_what_waits_for_its_end(
    harness: Harness, worker: SessionClient
) -> None:
    ids = await pipeline(
        harness,
        node("build"),
        node("test", "build"),
        node("publish", "test"),
        pb.SubmitRequest(task_name="noop", ref="report", after=after("build", needs=DONE)),
    )
    assert await run(worker, FAILURE) == ids["build"]
    assert await run(worker) == ids["report"]  # it waited for the end, whatever it was
    for name in ("test", "publish"):
        aborted = await harness.get(ids[name])
        assert aborted.state == pb.WORK_REQUEST_STATE_ABORTED
        assert aborted.error.reason == "dependency-failed"
    assert ids["build"] in (await harness.get(ids["test"])).error.message
    assert ids["test"] in (await harness.get(ids["publish"])).error.message
    shown = await harness.work_requests.GetPipeline(
        pb.GetPipelineRequest(id=ids["report"]), metadata=harness.submitter
    )
    assert (shown.done, shown.failed) == (True, 3)


async def test_retrying_a_failed_node_runs_it_and_what_was_aborted_below_it_only(
    harness: Harness, worker: SessionClient
) -> None:
    ids = await pipeline(harness, node("a"), node("b", "a"), node("c", "b"), node("d", "c"))
    assert await run(worker) == ids["a"]
    assert await run(worker, FAILURE) == ids["b"]
    await harness.wait_for_state(ids["d"], pb.WORK_REQUEST_STATE_ABORTED)
    code, reason, _, _ = await refusal(
        harness.work_requests.Retry(pb.RetryRequest(id=ids["c"]), metadata=harness.submitter)
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DEPENDENCY_NOT_MET")
    await harness.work_requests.Retry(pb.RetryRequest(id=ids["b"]), metadata=harness.submitter)
    for name in ("c", "d"):
        assert (await harness.get(ids[name])).state == pb.WORK_REQUEST_STATE_BLOCKED
    assert [await run(worker) for _ in range(3)] == [ids["b"], ids["c"], ids["d"]]
    assert (await harness.get(ids["a"])).attempt == 1  # never run again


async def test_a_batch_that_waits_in_a_cycle_or_for_nothing_stores_nothing(
    harness: Harness,
) -> None:
    before = await harness.work_requests.List(pb.ListRequest(), metadata=harness.admin)
    code, _, message, fields = await refusal(
        harness.work_requests.BatchSubmit(
            pb.BatchSubmitRequest(requests=[node("a", "c"), node("b", "a"), node("c", "b")]),
            metadata=harness.submitter,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "a -> c -> b -> a" in message or "c -> b -> a -> c" in message, message
    code, reason, _, fields = await refusal(
        harness.work_requests.BatchSubmit(
            pb.BatchSubmitRequest(requests=[node("a"), node("b", "a", "nosuch")]),
            metadata=harness.submitter,
        )
    )
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "DEPENDENCY_NOT_FOUND",
        ["requests[1].after[1].on"],
    )
    code, _, _, fields = await refusal(
        harness.work_requests.BatchSubmit(
            pb.BatchSubmitRequest(requests=[node("a"), node("a")]), metadata=harness.submitter
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["requests[1].ref"])
    code, _, _, fields = await refusal(
        harness.work_requests.BatchSubmit(
            pb.BatchSubmitRequest(requests=[node("a"), node("b", "a", data={"bad": 1})]),
            metadata=harness.submitter,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields
    assert fields[0].startswith("requests[1].task_data_json")
    after_all = await harness.work_requests.List(pb.ListRequest(), metadata=harness.admin)
    assert len(after_all.work_requests) == len(before.work_requests)


async def test_waiting_for_the_success_of_one_that_failed_is_refused(
    harness: Harness, worker: SessionClient
) -> None:
    failed = await harness.submit()
    assert await run(worker, FAILURE) == failed
    code, reason, message, _ = await refusal(
        harness.work_requests.Submit(
            pb.SubmitRequest(task_name="noop", after=after(failed)), metadata=harness.submitter
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DEPENDENCY_FAILED")
    assert failed in message
    # Its end is had: a report step runs at once.
    report = await harness.work_requests.Submit(
        pb.SubmitRequest(task_name="noop", after=after(failed, needs=DONE)),
        metadata=harness.submitter,
    )
    assert report.work_request.state in (
        pb.WORK_REQUEST_STATE_PENDING,
        pb.WORK_REQUEST_STATE_ASSIGNED,
    )


async def test_aborting_a_blocked_request_aborts_what_needs_it(
    harness: Harness,
) -> None:
    ids = await pipeline(harness, node("a", data={"sleep": 60}), node("b", "a"), node("c", "b"))
    await harness.work_requests.Abort(pb.AbortRequest(id=ids["b"]), metadata=harness.submitter)
    aborted = await harness.get(ids["c"])
    assert (aborted.state, aborted.error.reason) == (
        pb.WORK_REQUEST_STATE_ABORTED,
        "dependency-failed",
    )
    assert (await harness.get(ids["a"])).state == pb.WORK_REQUEST_STATE_PENDING


async def test_inputs_from_a_request_are_its_artifacts_once_it_succeeds(
    harness: Harness, worker: SessionClient, tmp_path: Path
) -> None:
    wanted = {"inputs": [{"request": "build", "category": "binary"}]}
    ids = await pipeline(harness, node("build"), node("use", data=wanted))
    assert (await harness.get(ids["use"])).state == pb.WORK_REQUEST_STATE_BLOCKED
    assignment = await worker.expect("assignment")
    (tmp_path / "out").write_bytes(b"built")
    made = await transfer.upload(
        harness.artifacts, worker.metadata, category="binary", files={"out": tmp_path / "out"},
        work_request_id=ids["build"], lease=assignment.lease,
    )  # fmt: skip
    await transfer.upload(
        harness.artifacts, worker.metadata, category="other", files={"x": tmp_path / "out"},
        work_request_id=ids["build"], lease=assignment.lease,
    )  # fmt: skip
    worker.completed(assignment.lease, SUCCESS)
    await worker.expect("ack")
    used = await worker.expect("assignment")
    assert used.lease.work_request_id == ids["use"]
    data = json.loads(used.task_data_json)
    assert data["inputs"] == [
        {"request": ids["build"], "category": "binary", "artifacts": [made.id]}
    ]
    # The worker holding it may read that input.
    read = await transfer.download(harness.artifacts, worker.metadata, made.id, tmp_path / "got")
    assert (tmp_path / "got" / "out").read_bytes() == b"built", read


async def test_a_resolved_input_cannot_be_given(harness: Harness) -> None:
    data = {"inputs": [{"request": "a", "artifacts": ["x"]}]}
    code, _, _, fields = await refusal(
        harness.work_requests.BatchSubmit(
            pb.BatchSubmitRequest(requests=[node("a"), node("b", data=data)]),
            metadata=harness.submitter,
        )
    )
    assert (code, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["requests[1].task_data_json.inputs[0].artifacts"],
    )


async def test_a_pipeline_submitted_again_with_its_keys_is_the_same(harness: Harness) -> None:
    nodes = [node("a", idempotency_key="k-a"), node("b", "a", idempotency_key="k-b")]
    first = await harness.work_requests.BatchSubmit(
        pb.BatchSubmitRequest(requests=nodes), metadata=harness.submitter
    )
    again = await harness.work_requests.BatchSubmit(
        pb.BatchSubmitRequest(requests=nodes), metadata=harness.submitter
    )
    assert [r.work_request.id for r in again.results] == [r.work_request.id for r in first.results]
    assert [r.created for r in again.results] == [False, False]


async def test_a_blocked_pipeline_survives_a_restart(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    try:
        ids = await pipeline(first, node("a"), node("b", "a"))
    finally:
        await stop_harness(first)
    again = await start_harness(tmp_path)
    try:
        client = await again.new_worker("after")
        await client.connect()
        assert await run(client) == ids["a"]
        assert await run(client) == ids["b"]
        await client.disconnect()
    finally:
        await stop_harness(again)
