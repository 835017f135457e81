"""Pipelines, measured with a real scheduler (SQLite, every commit on disk).

1. Parent completed -> child assigned, an idle worker: the simulated worker
   sends the parent's completion, the child's assignment arrives (chains of
   two, one at a time). Goal p50 <= 15 ms, p99 <= 50 ms.
2. 1 -> 10,000 -> 1 in one BatchSubmit: how long the call takes (goal
   <= 3 s), and, run through by simulated workers, from the last parent's
   end to the fan-in's assignment, on the scheduler's clock (goal <= 100 ms).
3. A root that fails under 10,000 descendants: from its failure sent to the
   last one (the fan-in below them all) seen aborted on a watch (goal <= 1 s;
   they are aborted in the commit that records the failure).
4. Three SIGKILLs of the scheduler mid-pipeline (1 -> 20 -> 1 of 0.3 s
   commands on real workers): every node runs exactly once, and the
   pipeline completes.

Run: .venv/bin/python bench/pipelines.py [--samples 200] [--fan 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeAlias

import grpc

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import common_pb2, work_requests_pb2_grpc, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb

from support import (
    Child,
    SimulatedWorker,
    channel_to,
    free_port,
    machine,
    percentile,
    real_workers,
    scheduler_process,
    wait_for_workers,
)

Metadata = tuple[tuple[str, str], ...]


def node(ref: str, *after: str, task: str = "noop", data: str = "") -> pb.SubmitRequest:
    return pb.SubmitRequest(
        task_name=task, task_data_json=data, ref=ref, after=[pb.Dependency(on=a) for a in after]
    )


# The generated stubs' type for an aio channel (it exists for mypy only).
Stub: TypeAlias = "work_requests_pb2_grpc.WorkRequestServiceAsyncStub"


def stub_of(channel: grpc.aio.Channel) -> Stub:
    return work_requests_pb2_grpc.WorkRequestServiceStub(channel)


@asynccontextmanager
async def farm(
    workers: int, slots: int
) -> AsyncIterator[tuple[Stub, Metadata, list[SimulatedWorker]]]:
    """A scheduler process with `workers` simulated workers of `slots`."""
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            done = asyncio.Event()
            simulated = [SimulatedWorker(channel, f"sim{n}", slots) for n in range(workers)]
            running = [asyncio.create_task(w.run(done)) for w in simulated]
            await wait_for_workers(channel, admin, workers)
            try:
                yield stub_of(channel), bearer_metadata(admin), simulated
            finally:
                done.set()
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)


async def release_latency(samples: int) -> list[float]:
    """Seconds from a parent's completion sent to its child's assignment."""
    async with farm(1, 1) as (stub, admin, [worker]):
        arrived: dict[str, float] = {}
        got = asyncio.Event()

        def on_assignment(lease: common_pb2.Lease) -> None:
            arrived[lease.work_request_id] = time.perf_counter()
            got.set()

        worker.on_assignment = on_assignment
        found = []
        for number in range(samples + 20):
            batch = await stub.BatchSubmit(
                pb.BatchSubmitRequest(requests=[node("p"), node("c", "p")]), metadata=admin
            )
            parent, child = (r.work_request.id for r in batch.results)
            while child not in arrived:
                got.clear()
                await asyncio.wait_for(got.wait(), 30)
            if number >= 20:  # warm-up
                found.append(arrived[child] - arrived[parent])
            await asyncio.sleep(0.005)  # the child's end recorded: idle again
    return found


async def fan_out_and_in(fan: int) -> tuple[float, float]:
    """Seconds the BatchSubmit of 1 -> `fan` -> 1 took, and from the last
    parent's end to the fan-in's assignment (the scheduler's clock)."""
    async with farm(4, 50) as (stub, admin, _):
        children = [f"c{n}" for n in range(fan)]
        nodes = [node("root"), *(node(c, "root") for c in children), node("join", *children)]
        began = time.perf_counter()
        batch = await stub.BatchSubmit(pb.BatchSubmitRequest(requests=nodes), metadata=admin)
        submitted = time.perf_counter() - began
        ids = [r.work_request.id for r in batch.results]
        join = ids[-1]
        while True:
            got = await stub.Get(pb.GetRequest(id=join), metadata=admin)
            if got.work_request.state == pb.WORK_REQUEST_STATE_COMPLETED:
                break
            await asyncio.sleep(0.2)
        last_parent = 0.0
        for start in range(1, fan + 1, 1000):  # the parents' ends
            for work_request_id in ids[start : start + 1000]:
                ended = await stub.Get(pb.GetRequest(id=work_request_id), metadata=admin)
                last_parent = max(last_parent, ended.work_request.completed_at.ToNanoseconds())
        assigned = got.work_request.assigned_at.ToNanoseconds()
        return submitted, (assigned - last_parent) / 1e9


async def failure_under(fan: int) -> tuple[float, int]:
    """Seconds from a root's failure sent to the last of its `fan` + 1
    descendants seen aborted; and how many were aborted."""
    async with farm(1, 1) as (stub, admin, [worker]):
        sent: list[float] = []

        def fail(lease: common_pb2.Lease) -> int:
            sent.append(time.perf_counter())
            return workers_pb2.WORK_OUTCOME_FAILURE

        worker.outcome_of = fail  # only the root ever runs
        # The root waits for the end of a request no worker can run, so that
        # the watch of the last descendant is open before the root fails.
        gate = await stub.Submit(
            pb.SubmitRequest(task_name="command", task_data_json='{"command": ["make"]}'),
            metadata=admin,
        )
        root = node("root")
        root.after.add(on=gate.work_request.id, needs=pb.DEPENDENCY_NEEDS_DONE)
        children = [f"c{n}" for n in range(fan)]
        nodes = [root, *(node(c, "root") for c in children), node("join", *children)]
        batch = await stub.BatchSubmit(pb.BatchSubmitRequest(requests=nodes), metadata=admin)
        join = batch.results[-1].work_request.id
        watch = stub.Watch(pb.WatchRequest(id=join), metadata=admin)
        changes = aiter(watch)
        await anext(changes)  # blocked: the watch is open
        await stub.Abort(pb.AbortRequest(id=gate.work_request.id), metadata=admin)
        async for change in changes:
            if change.work_request.state == pb.WORK_REQUEST_STATE_ABORTED:
                seen = time.perf_counter()
                break
        watch.cancel()
        aborted = 0
        token = ""
        while True:
            wanted = pb.ListRequest(
                states=[pb.WORK_REQUEST_STATE_ABORTED], page_size=1000, page_token=token
            )
            listed = await stub.List(wanted, metadata=admin)
            aborted += len(listed.work_requests)
            token = listed.next_page_token
            if not token:
                break
        return seen - sent[-1], aborted


async def kills(width: int, rounds: int) -> tuple[int, int, bool]:
    """Nodes of 1 -> `width` -> 1 that ran once, and that ran twice or more,
    across `rounds` scheduler SIGKILLs; and whether the pipeline completed."""
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-kills-") as root, ExitStack() as stack:
        log = Path(root) / "ran"
        listen = f"127.0.0.1:{free_port()}"
        options = ("--listen", listen, "--heartbeat-interval", "0.5", "--lease-grace", "5")

        def restart() -> tuple[Child, Metadata]:
            child, admin = stack.enter_context(scheduler_process(options=options, data_dir=root))
            return child, bearer_metadata(admin)

        def ran(name: str) -> str:
            return json.dumps({"command": ["sh", "-c", f"sleep 0.3; echo {name} >> {log}"]})

        names = ["root", *(f"c{n}" for n in range(width)), "join"]
        nodes = [node("root", task="command", data=ran("root")),
                 *(node(n, "root", task="command", data=ran(n)) for n in names[1:-1]),
                 node("join", *names[1:-1], task="command", data=ran("join"))]  # fmt: skip
        current, admin = restart()
        stack.enter_context(
            real_workers(
                listen, 2, 4, {"TASKYARD_ALLOWED_COMMANDS": "sh"}, ("--executor", "process")
            )
        )
        async with channel_to(listen) as channel:
            await wait_for_workers(channel, admin[0][1].split()[1], 2)
            batch = await stub_of(channel).BatchSubmit(
                pb.BatchSubmitRequest(requests=nodes), metadata=admin
            )
        join = batch.results[-1].work_request.id
        for _ in range(rounds):
            await asyncio.sleep(1.0)  # some nodes run, some have ended
            os.kill(current.pid, signal.SIGKILL)
            current.process.wait()
            current, admin = restart()
        completed = await _completed(listen, admin, join)
        ended = log.read_text().split() if log.exists() else []
        once = sum(ended.count(n) == 1 for n in names)
        twice = sum(ended.count(n) > 1 for n in names)
        return once, twice, completed


async def _completed(address: str, admin: Metadata, work_request_id: str) -> bool:
    """Whether the request ends with success (within 2 minutes)."""
    async with channel_to(address) as channel:
        stub = stub_of(channel)
        for _ in range(600):
            try:
                got = await stub.Get(pb.GetRequest(id=work_request_id), metadata=admin)
            except grpc.aio.AioRpcError:
                got = None
            if got is not None and got.work_request.state == pb.WORK_REQUEST_STATE_COMPLETED:
                return got.work_request.result == pb.WORK_REQUEST_RESULT_SUCCESS
            await asyncio.sleep(0.2)
    return False


async def main(args: argparse.Namespace) -> None:
    print(machine())
    latencies = sorted(await release_latency(args.samples))
    p50, p99 = (percentile(latencies, q) * 1e3 for q in (0.5, 0.99))
    print(f"parent completed -> child assigned, idle worker ({len(latencies)}): "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (goals 15 ms, 50 ms)")  # fmt: skip
    submitted, join_after = await fan_out_and_in(args.fan)
    print(f"1 -> {args.fan:,} -> 1 in one BatchSubmit: {submitted:.2f} s (goal 3 s); fan-in "
          f"assigned {join_after * 1e3:.1f} ms after the last parent (goal 100 ms)")  # fmt: skip
    took, aborted = await failure_under(args.fan)
    print(f"root failed under {args.fan:,} + 1 descendants: all {aborted:,} aborted, the last "
          f"seen {took * 1e3:.0f} ms after the failure was sent (goal 1 s)")  # fmt: skip
    once, twice, completed = await kills(20, 3)
    outcome = "completed" if completed else "DID NOT complete"
    print(f"3 scheduler SIGKILLs mid-pipeline (1 -> 20 -> 1, real workers): {once} of 22 nodes "
          f"ran once, {twice} more than once; the pipeline {outcome}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--fan", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
