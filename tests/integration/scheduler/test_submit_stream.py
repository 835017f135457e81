"""SubmitStream: requests on one stream, each answered in order once
committed, those arriving together committed together; a cut stream loses
nothing it had answered and leaves nothing stored yet unqueued."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc

from taskyard.v1 import work_requests_pb2 as pb

from .harness import Harness


def item(task: str = "noop", **fields: Any) -> pb.SubmitStreamRequest:
    return pb.SubmitStreamRequest(request=pb.SubmitRequest(task_name=task, **fields))


async def stored_ids(harness: Harness) -> set[str]:
    found: set[str] = set()
    token = ""
    while True:
        page = await harness.work_requests.List(
            pb.ListRequest(page_size=500, page_token=token), metadata=harness.submitter
        )
        found |= {w.id for w in page.work_requests}
        if not (token := page.next_page_token):
            return found


async def test_answers_come_in_order_each_on_its_own(harness: Harness) -> None:
    items = [
        item(),
        item(task_data_json='{"sleep": -5}'),
        item("nope"),
        item("x" * 300),  # over the name's limit: refused by the edge, the stream goes on
        item(priority=2),
        item(after=[pb.Dependency(on="wr-none")]),
    ]
    call = harness.work_requests.SubmitStream(iter(items), metadata=harness.submitter)
    answers = [a async for a in call]
    assert [a.index for a in answers] == list(range(len(items)))
    kinds = [a.WhichOneof("outcome") for a in answers]
    assert kinds == ["work_request", "problem", "problem", "problem", "work_request", "problem"]
    reasons = [a.problem.reason for a in answers]
    assert reasons[1:4] == ["TASK_DATA_INVALID", "UNKNOWN_TASK", "FIELD_INVALID"]
    assert reasons[5] == "DEPENDENCY_NOT_FOUND"
    assert answers[3].problem.field_violations[0].field == "request.task_name"
    assert answers[4].work_request.priority == 2
    assert answers[4].created
    assert await stored_ids(harness) == {answers[0].work_request.id, answers[4].work_request.id}


async def test_requests_arriving_together_share_commits(harness: Harness) -> None:
    committer = harness.running.scheduler.core.db
    gate = threading.Event()
    holding = asyncio.ensure_future(committer.run(lambda tx: gate.wait()))  # the store is busy
    call = harness.work_requests.SubmitStream(
        iter([item() for _ in range(200)]), metadata=harness.submitter
    )
    answers = aiter(call)
    while committer.queued < 200:  # every request read, each waiting for its commit
        await asyncio.sleep(0.01)
    before = committer.commits
    gate.set()
    await holding
    ids = [(await anext(answers)).work_request.id for _ in range(200)]
    assert len(set(ids)) == 200
    assert committer.commits - before <= 2  # one batch (two if split at its size)


async def test_a_repeated_key_answers_the_first_request(harness: Harness) -> None:
    items = [item(idempotency_key="k1"), item(idempotency_key="k1")]
    first, second = [a async for a in harness.work_requests.SubmitStream(
        iter(items), metadata=harness.submitter)]  # fmt: skip
    assert first.work_request.id == second.work_request.id
    assert (first.created, second.created) == (True, False)


async def test_a_stream_cut_mid_batch_leaves_nothing_stored_unqueued(harness: Harness) -> None:
    committer = harness.running.scheduler.core.db
    gate = threading.Event()
    holding = asyncio.ensure_future(committer.run(lambda tx: gate.wait()))

    async def requests() -> AsyncIterator[pb.SubmitStreamRequest]:
        for _ in range(100):
            yield item()
        await asyncio.Event().wait()  # the client never closes its side

    call = harness.work_requests.SubmitStream(requests(), metadata=harness.submitter)
    while committer.queued < 100:  # all read, their commits waiting
        await asyncio.sleep(0.01)
    call.cancel()  # cut mid-batch: none answered yet
    gate.set()
    await holding
    stored = await stored_ids(harness)  # committed or not: either is fine...
    assert await call.code() == grpc.StatusCode.CANCELLED
    worker = await harness.new_worker("w")
    await worker.connect(slots=len(stored) + 1)
    assigned = {(await worker.expect("assignment")).lease.work_request_id for _ in stored}
    assert assigned == stored  # ...but each one stored is queued, and runs
    await worker.disconnect()


async def test_answered_requests_survive_a_cut(harness: Harness) -> None:
    async def requests() -> AsyncIterator[pb.SubmitStreamRequest]:
        for _ in range(50):
            yield item()
        await asyncio.Event().wait()

    call = harness.work_requests.SubmitStream(requests(), metadata=harness.submitter)
    answers = aiter(call)
    answered = [(await anext(answers)).work_request.id for _ in range(10)]
    call.cancel()
    assert set(answered) <= await stored_ids(harness)
