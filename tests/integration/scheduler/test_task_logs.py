"""Live logs through a real scheduler: a worker's output is stored once, in
order, whatever it resends; followers get it as it arrives; each log is
capped; only the lease holder writes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from taskyard import logframes
from taskyard.v1 import common_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.scheduler.harness import Harness, SessionClient, start_harness, stop_harness


def output(lease: common_pb2.Lease, offset: int, *texts: str, end: bool = False) -> Any:
    chunks = [workers_pb2.OutputChunk(stream=logframes.STDOUT, data=t.encode()) for t in texts]  # type: ignore[arg-type]
    return workers_pb2.TaskOutput(lease=lease, offset=offset, chunks=chunks, end=end)


def size(*texts: str) -> int:
    return sum(logframes.HEADER.size + len(t.encode()) for t in texts)


async def running(harness: Harness) -> tuple[SessionClient, common_pb2.Lease, str]:
    worker = await harness.new_worker()
    await worker.connect()
    work_request_id = await harness.submit("noop", {"sleep": 30})
    lease = (await worker.expect("assignment")).lease
    return worker, lease, work_request_id


async def read(harness: Harness, work_request_id: str, **fields: Any) -> list[pb.LogsResponse]:
    request = pb.LogsRequest(id=work_request_id, **fields)
    stream = harness.work_requests.Logs(request, metadata=harness.submitter)
    return [chunk async for chunk in stream]


async def test_resent_output_is_stored_once_and_a_gap_is_refused(harness: Harness) -> None:
    worker, lease, work_request_id = await running(harness)
    worker.send(output=output(lease, 0, "one\n", "two\n"))
    assert (await worker.expect("output_acks")).acks[0].committed == size("one\n", "two\n")
    worker.send(output=output(lease, size("one\n"), "two\n", "three\n"))  # two again: a resend
    ack = (await worker.expect("output_acks")).acks[0]
    assert (ack.committed, ack.closed) == (size("one\n", "two\n", "three\n"), False)
    worker.send(output=output(lease, ack.committed + 100, "lost?\n"))  # past the end: a gap
    assert (await worker.expect("output_acks")).acks[0].committed == ack.committed
    chunks = await read(harness, work_request_id)
    assert [c.data for c in chunks] == [b"one\n", b"two\n", b"three\n"]
    assert chunks[1].offset == chunks[0].next_offset
    later = await read(harness, work_request_id, offset=chunks[1].next_offset)
    assert [c.data for c in later] == [b"three\n"]
    await worker.disconnect()


async def test_a_follower_gets_output_as_it_comes_and_stops_at_the_end(harness: Harness) -> None:
    worker, lease, work_request_id = await running(harness)
    request = pb.LogsRequest(id=work_request_id, follow=True)
    stream = harness.work_requests.Logs(request, metadata=harness.submitter)
    worker.send(output=output(lease, 0, "first\n"))
    first = await asyncio.wait_for(anext(aiter(stream)), 5)
    assert first.data == b"first\n"
    worker.send(output=output(lease, first.next_offset, "last\n", end=True))
    rest = [chunk.data async for chunk in stream]
    assert rest == [b"last\n"]
    await worker.disconnect()


async def test_only_the_lease_holder_writes(harness: Harness) -> None:
    worker, lease, work_request_id = await running(harness)
    other = await harness.new_worker("other")
    await other.connect()
    other.send(output=output(lease, 0, "forged\n"))
    assert (await other.expect("output_acks")).acks[0].closed
    stale = common_pb2.Lease(work_request_id=work_request_id, attempt=lease.attempt + 1)
    worker.send(output=output(stale, 0, "stale\n"))
    assert (await worker.expect("output_acks")).acks[0].closed
    assert await read(harness, work_request_id) == []
    await worker.disconnect()
    await other.disconnect()


async def test_a_log_is_cut_at_its_cap_and_says_so(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, log_cap=100)
    try:
        worker, lease, work_request_id = await running(harness)
        worker.send(output=output(lease, 0, "x" * 60))
        worker.send(output=output(lease, size("x" * 60), "y" * 60))
        await worker.expect("output_acks")
        assert (await worker.expect("output_acks")).acks[0].closed
        chunks = await read(harness, work_request_id)
        assert chunks[0].data == b"x" * 60
        assert chunks[-1].stream == pb.LOG_STREAM_TASKYARD
        assert b"log cut" in chunks[-1].data
        await worker.disconnect()
    finally:
        await stop_harness(harness)


async def test_an_offset_between_chunks_is_refused(harness: Harness) -> None:
    worker, lease, work_request_id = await running(harness)
    worker.send(output=output(lease, 0, "hello world\n"))
    await worker.expect("output_acks")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read(harness, work_request_id, offset=3)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await worker.disconnect()


async def test_output_for_no_request_at_all_is_turned_down(harness: Harness) -> None:
    worker, _, _ = await running(harness)
    for lease in (common_pb2.Lease(), common_pb2.Lease(work_request_id="../../etc", attempt=1)):
        worker.send(output=output(lease, 0, "x"))
        assert (await worker.expect("output_acks")).acks[0].closed
    await worker.disconnect()
