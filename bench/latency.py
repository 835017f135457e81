"""Submit -> assignment received, with idle workers, beside a bare unary round trip.

Requests are submitted one at a time to a real scheduler process with idle
simulated workers; the latency is from sending Submit to a worker holding the
assignment (a durable commit of the submit and of the claim lies between). In
the same run, a bare gRPC server answers trivial unary calls one at a time.
Targets: p50 <= 2.5x the bare round trip, p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import common_pb2, work_requests_pb2, work_requests_pb2_grpc

from support import (
    SimulatedWorker,
    bare_call,
    bare_server,
    channel_to,
    machine,
    percentile,
    real_workers,
    scheduler_process,
    wait_for_workers,
)


async def submit_to_assignment(samples: int, workers: int) -> list[float]:
    """Seconds from Submit to the assignment arriving, one request at a time."""
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            done = asyncio.Event()
            arrived: asyncio.Queue[float] = asyncio.Queue()
            simulated = [SimulatedWorker(channel, f"idle{i}", 1) for i in range(workers)]

            def assigned(_lease: common_pb2.Lease) -> None:
                arrived.put_nowait(time.perf_counter())

            for worker in simulated:
                worker.on_assignment = assigned
            serving = [asyncio.create_task(w.run(done)) for w in simulated]
            await asyncio.sleep(1.0)
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            metadata = bearer_metadata(admin)
            request = work_requests_pb2.SubmitRequest(task_name="noop")
            latencies = []
            for number in range(samples + 20):
                before = sum(w.completed for w in simulated)
                sent = time.perf_counter()
                await stub.Submit(request, metadata=metadata)
                received = await arrived.get()
                if number >= 20:  # warm-up
                    latencies.append(received - sent)
                while sum(w.completed for w in simulated) == before:  # idle again
                    await asyncio.sleep(0.001)
            done.set()
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)
    return latencies


async def submit_to_running(samples: int, workers: int) -> list[float]:
    """With real worker processes: seconds from Submit until the request is seen
    RUNNING (the worker got it, started it and said so), one at a time."""
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            with real_workers(scheduler.address, workers, 1):
                await wait_for_workers(channel, admin, workers)
                stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
                metadata = bearer_metadata(admin)
                latencies = []
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
                    if number >= 20 and running is not None:
                        latencies.append(running - sent)
    return latencies


async def bare_round_trips(samples: int) -> list[float]:
    """Seconds per bare unary round trip, one at a time."""
    with bare_server() as server:
        async with channel_to(server.address) as channel:
            echo = bare_call(channel)
            times = []
            for number in range(samples + 20):
                sent = time.perf_counter()
                await echo(b"x" * 64)
                if number >= 20:
                    times.append(time.perf_counter() - sent)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    taskyard = await submit_to_assignment(args.samples, args.workers)
    real = await submit_to_running(args.samples // 2, args.workers)
    bare = await bare_round_trips(args.samples)
    print(f"machine: {machine()}")
    print(f"{args.samples} sequential requests, {args.workers} idle simulated workers")
    print(f"{'measure':<44} {'p50 ms':>8} {'p99 ms':>8}")
    rows = (
        ("submit -> assignment received (simulated)", taskyard),
        ("submit -> seen running (real workers)", real),
        ("bare unary round trip", bare),
    )
    for label, values in rows:
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        print(f"{label:<44} {p50:>8.2f} {p99:>8.2f}")
    ratio = percentile(taskyard, 0.5) / percentile(bare, 0.5)
    print(f"p50 ratio taskyard / bare: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
