"""Live logs: how soon a line a task writes reaches a follower, what streaming
a flood of output costs a task, and what it costs the scheduler's memory.

1. Latency: a task prints a timestamp every 50 ms; a follower (`Logs` with
   `follow`) notes when each line arrives. Idle, then with two other tasks
   writing output as fast as they can beside it. Goal: p50 under 50 ms.
2. A task writing 200 MB to stdout (streamed live and kept as its debug log)
   against the same program writing to /dev/null: run time, started to
   completed, and their ratio.
3. The scheduler's peak RSS growth while 8 such tasks run at once. Goal:
   under 64 MiB.
Real scheduler and worker processes on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import work_requests_pb2_grpc

from support import (
    channel_to,
    machine,
    percentile,
    real_workers,
    scheduler_process,
    wait_for_workers,
)

TICKER = (
    "import time, sys\n"
    "for _ in range({count}):\n"
    "    print(repr(time.time()), flush=True)\n"
    "    time.sleep(0.05)\n"
)
FLOOD = "head -c {size} /dev/zero{target}"
if TYPE_CHECKING:
    Stub = work_requests_pb2_grpc.WorkRequestServiceAsyncStub


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


async def submit(stub: Stub, token: str, argv: list[str]) -> str:
    request = pb.SubmitRequest(task_name="command", task_data_json=json.dumps({"command": argv}))
    response = await stub.Submit(request, metadata=bearer_metadata(token))
    return str(response.work_request.id)


async def finished(stub: Stub, token: str, work_request_id: str) -> pb.WorkRequest:
    stream = stub.Watch(pb.WatchRequest(id=work_request_id), metadata=bearer_metadata(token))
    last: pb.WorkRequest | None = None
    async for change in stream:
        last = change.work_request
    assert last is not None
    return last


async def line_latency(stub: Stub, token: str, lines: int, load: int) -> list[float]:
    flood = [
        await submit(stub, token, ["sh", "-c", FLOOD.format(size=300 * 10**6, target="")])
        for _ in range(load)
    ]
    ticker = await submit(stub, token, [sys.executable, "-c", TICKER.format(count=lines)])
    delays: list[float] = []
    buffer = b""
    request = pb.LogsRequest(id=ticker, follow=True)
    async for chunk in stub.Logs(request, metadata=bearer_metadata(token)):
        arrived = time.time()
        if chunk.stream != pb.LOG_STREAM_STDOUT:
            continue
        buffer += chunk.data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            delays.append(arrived - float(line))
    for work_request_id in flood:
        await finished(stub, token, work_request_id)
    return delays


async def run_time(stub: Stub, token: str, target: str, size: int) -> float:
    argv = ["sh", "-c", FLOOD.format(size=size, target=target)]
    done = await finished(stub, token, await submit(stub, token, argv))
    assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, done
    return (done.completed_at.ToDatetime() - done.started_at.ToDatetime()).total_seconds()


async def main(args: argparse.Namespace) -> None:
    print(machine())
    env = {"TASKYARD_ALLOWED_COMMANDS": f"sh,{sys.executable}"}
    with scheduler_process() as (scheduler, token):
        async with channel_to(scheduler.address) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            with real_workers(scheduler.address, 1, 8, env):
                await wait_for_workers(channel, token, 1)
                for load, label in ((0, "idle"), (2, "2 tasks flooding beside it")):
                    delays = await line_latency(stub, token, args.lines, load)
                    print(
                        f"line -> follower, {label}: p50 {percentile(delays, 0.5) * 1000:.1f} ms,"
                        f" p99 {percentile(delays, 0.99) * 1000:.1f} ms ({len(delays)} lines)"
                    )
                size = args.megabytes * 10**6
                quiet = await run_time(stub, token, " > /dev/null", size)
                loud = await run_time(stub, token, "", size)
                print(
                    f"{args.megabytes} MB of output: {loud:.2f} s streamed and kept, "
                    f"{quiet:.2f} s to /dev/null (ratio {loud / quiet:.1f})"
                )
                before = peak_rss(scheduler.pid)
                ids = [
                    await submit(stub, token, ["sh", "-c", FLOOD.format(size=size, target="")])
                    for _ in range(8)
                ]
                for work_request_id in ids:
                    await finished(stub, token, work_request_id)
                grown = (peak_rss(scheduler.pid) - before) / 2**20
                print(f"scheduler peak RSS growth, 8 tasks x {args.megabytes} MB: {grown:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--megabytes", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
