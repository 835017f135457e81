"""Submit -> assignment received, with idle workers, beside a bare unary round trip.

Requests are submitted one at a time to a real scheduler process with idle
simulated workers (in a process of their own, as real workers are); the
latency is from sending Submit to a worker holding the assignment (a durable
commit of the submit and of the claim lies between). Each submit is preceded
by one trivial unary call to a bare gRPC server, so both are measured at the
same moments of the machine, each after the same short pause.
Targets: p50 <= 2.5x the bare round trip, p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2, work_requests_pb2_grpc

from support import (
    bare_call,
    bare_server,
    channel_to,
    machine,
    percentile,
    real_workers,
    scheduler_process,
    wait_for_workers,
)

IDLE_WORKERS = Path(__file__).with_name("idle_workers.py")
#: Pause before each measured call, so neither starts while the other's
#: trailing work (commits, acknowledgements) still runs.
QUIET = 0.002


async def submit_to_assignment(samples: int, workers: int) -> tuple[list[float], list[float]]:
    """Seconds from Submit to the assignment arriving, one request at a time,
    and, alternating with them, seconds per bare unary round trip, so both see
    the same moments of this shared machine.

    The idle workers run in their own process, as real workers do, so the
    submitting client's handling of its own answer does not delay theirs.
    """
    with scheduler_process() as (scheduler, admin), bare_server() as server:
        idle = await asyncio.create_subprocess_exec(
            sys.executable, str(IDLE_WORKERS), scheduler.address, str(workers),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert idle.stdin is not None
        assert idle.stdout is not None
        try:
            assert await idle.stdout.readline() == b"ready\n"
            async with (
                channel_to(scheduler.address) as channel,
                channel_to(server.address) as bare_channel,
            ):
                echo = bare_call(bare_channel)
                stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
                metadata = bearer_metadata(admin)
                request = work_requests_pb2.SubmitRequest(task_name="noop")
                latencies, bare = [], []
                for number in range(samples + 20):
                    await asyncio.sleep(QUIET)
                    sent = time.perf_counter()
                    await echo(b"x" * 64)
                    answered = time.perf_counter()
                    await asyncio.sleep(QUIET)
                    submitted = time.perf_counter()
                    await stub.Submit(request, metadata=metadata)
                    word, received = (await idle.stdout.readline()).split()
                    assert word == b"assigned"
                    if number >= 20:  # warm-up
                        bare.append(answered - sent)
                        latencies.append(float(received) - submitted)
                    assert await idle.stdout.readline() == b"recorded\n"  # idle again
        finally:
            idle.stdin.close()
            try:
                await asyncio.wait_for(idle.wait(), 30)
            except TimeoutError:
                idle.kill()
                await idle.wait()
    return latencies, bare


async def submit_to_running(samples: int, workers: int) -> tuple[list[float], list[float]]:
    """With real worker processes: seconds from Submit until the request is seen
    RUNNING (the worker got it, started it and said so), and until it is seen
    COMPLETED (its result recorded), one at a time."""
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            with real_workers(scheduler.address, workers, 1):
                await wait_for_workers(channel, admin, workers)
                stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
                metadata = bearer_metadata(admin)
                latencies, completions = [], []
                for number in range(samples + 20):
                    sent = time.perf_counter()
                    submitted = await stub.Submit(
                        work_requests_pb2.SubmitRequest(task_name="noop"), metadata=metadata
                    )
                    running = None
                    watch = work_requests_pb2.WatchRequest(id=submitted.work_request.id)
                    async for change in stub.Watch(watch, metadata=metadata):
                        state = change.work_request.state
                        if (
                            running is None
                            and state >= work_requests_pb2.WORK_REQUEST_STATE_RUNNING
                        ):
                            running = time.perf_counter()
                    done = time.perf_counter()  # the watch ends as it completes
                    if number >= 20 and running is not None:
                        latencies.append(running - sent)
                        completions.append(done - sent)
    return latencies, completions


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    taskyard, bare = await submit_to_assignment(args.samples, args.workers)
    real, completed = await submit_to_running(args.samples // 2, args.workers)
    print(f"machine: {machine()}")
    print(f"{args.samples} sequential requests, {args.workers} idle simulated workers")
    print(f"{'measure':<44} {'p50 ms':>8} {'p99 ms':>8}")
    rows = (
        ("submit -> assignment received (simulated)", taskyard),
        ("submit -> seen running (real workers)", real),
        ("submit -> seen completed (real idle workers)", completed),
        ("bare unary round trip", bare),
    )
    for label, values in rows:
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        print(f"{label:<44} {p50:>8.2f} {p99:>8.2f}")
    ratio = percentile(taskyard, 0.5) / percentile(bare, 0.5)
    print(f"p50 ratio taskyard / bare: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
