"""Two schedulers on one PostgreSQL database, failing again and again.

1. Failover. Schedulers a and b (each serving /metrics) on a fresh database
   of the local PostgreSQL and one blob directory; four real workers x 2
   slots given `--scheduler a,b` (two try a first, two b first), running
   0.2 s commands that write their start and their end to a file; a client
   submitting 25 a second to `a,b`, each with an idempotency key, trying the
   same key again while a scheduler is away. Rounds:
   - SIGKILL the scheduler holding more workers; measure the time from the
     kill to the first assignment (its `assigned_at`) to a worker that was
     on it; start it again.
   - Every fourth round instead: a request that sleeps past its 2 s
     execution timeout runs; SIGSTOP the scheduler running maintenance for
     twice the lease TTL, then SIGCONT. The other takes the lease and times
     the sleeper out while the first is stopped; the first, resumed, tries
     to time it out too. Count its refused writes (its /metrics) and check
     that the sleeper's record is the new leader's.
   At the end every acknowledged request must be completed with success:
   count those lost, those whose task started or ended more than once, and
   those run on a second attempt.
2. Throughput. No-op requests through simulated workers with one scheduler,
   and with two (the workers and the submitting clients split between
   them), each round on a fresh database of the same server, alternating;
   the ratio two / one.

Run: .venv/bin/python bench/ha.py [--rounds 20] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.duration_pb2 import Duration

from taskyard.rpc import targets
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.v1 import operator_pb2, operator_pb2_grpc, work_requests_pb2_grpc
from taskyard.v1 import work_requests_pb2 as pb

from support import (
    TASKYARD,
    Child,
    SimulatedWorker,
    free_port,
    machine,
    percentile,
    postgres_database,
    real_workers,
    run_concurrently,
    spawn,
    stop,
)

TTL = 5.0  # the default --leader-ttl
TASK_SECONDS = 0.2
SUBMITS_PER_SECOND = 25
SLEEPER = pb.SubmitRequest(
    task_name="command",
    task_data_json=json.dumps({"command": ["sh", "-c", "sleep 8"]}),
    timeout=Duration(seconds=2),
)


def many(addresses: str) -> grpc.aio.Channel:
    """A channel to the first of several schedulers that answers."""
    options = [*CHANNEL_OPTIONS, ("grpc.service_config", targets.SERVICE_CONFIG)]
    return grpc.aio.insecure_channel(targets.channel_target(addresses), options=options)


def scrape(child: Child, name: str) -> float:
    """A sample of a scheduler's /metrics (0 when absent)."""
    with urllib.request.urlopen(child.page + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass
class Farm:
    """Scheduler processes on one database and blob directory, each
    restartable on its port."""

    database: str
    root: Path
    count: int
    ports: list[int] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports = [free_port() for _ in range(self.count)]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    @property
    def token(self) -> str:
        return (self.root / "s0" / "admin.token").read_text().strip()

    def start(self, number: int) -> None:
        command = [*TASKYARD, "scheduler", "--data-dir", str(self.root / f"s{number}"),
                   "--database", self.database, "--blob-dir", str(self.root / "blobs"),
                   "--listen", self.addresses[number], "--http", "127.0.0.1:0",
                   "--auto-enable-workers", "--leader-ttl", str(TTL)]  # fmt: skip
        child = spawn(command)
        if number < len(self.children):
            self.children[number] = child
        else:
            self.children.append(child)

    def close(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
            stop(child)


@contextmanager
def farm_of(count: int) -> Iterator[Farm]:
    """`count` schedulers on a fresh database of the test PostgreSQL server."""
    with tempfile.TemporaryDirectory(prefix="taskyard-ha-") as root, postgres_database() as url:
        farm = Farm(url, Path(root), count)
        try:
            for number in range(count):
                farm.start(number)
            yield farm
        finally:
            farm.close()


class Submitter:
    """A steady stream of short commands, each with an idempotency key, the
    same key tried again while a scheduler is away; keeps those acknowledged."""

    def __init__(self, addresses: str, token: str, runs: Path) -> None:
        self._addresses, self._metadata, self._runs = addresses, bearer_metadata(token), runs
        self.acknowledged: dict[str, str] = {}  # key -> request id
        self.failed_calls = 0

    def _request(self, key: str) -> pb.SubmitRequest:
        note = f">> {self._runs}"
        script = f"echo start {key} {note}; sleep {TASK_SECONDS}; echo end {key} {note}"
        data = json.dumps({"command": ["sh", "-c", script]})
        return pb.SubmitRequest(task_name="command", task_data_json=data, idempotency_key=key)

    async def run(self, stopping: asyncio.Event) -> None:
        async with many(self._addresses) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            number = 0
            while not stopping.is_set():
                key = f"ha-{number}"
                try:
                    response = await stub.Submit(
                        self._request(key), metadata=self._metadata, timeout=5
                    )
                except grpc.aio.AioRpcError:
                    self.failed_calls += 1
                    await asyncio.sleep(0.05)
                    continue
                self.acknowledged[key] = response.work_request.id
                number += 1
                await asyncio.sleep(1 / SUBMITS_PER_SECOND)


class Assignments:
    """Assignments seen by a watch on each scheduler (opened again after it restarts)."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)
        self.seen: list[tuple[float, str]] = []  # (assigned_at, worker)

    async def follow(self, address: str) -> None:
        request = pb.WatchRequest(states=[pb.WORK_REQUEST_STATE_ASSIGNED])
        options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        while True:
            async with grpc.aio.insecure_channel(address, options=options) as channel:
                stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    async for change in stub.Watch(request, metadata=self._metadata):
                        assigned = change.work_request
                        at = assigned.assigned_at.ToNanoseconds() / 1e9
                        self.seen.append((at, assigned.worker_name))
            await asyncio.sleep(0.2)

    async def first_to(self, workers: set[str], after: float, limit: float = 60) -> float:
        """Seconds from `after` (wall clock) to the first assignment to one of `workers`."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            times = [at for at, name in self.seen if name in workers and at > after]
            if times:
                return min(times) - after
            await asyncio.sleep(0.01)
        return float("inf")


@dataclass
class Failover:
    """The rounds of part 1, and what they measured."""

    farm: Farm
    channel: grpc.aio.Channel
    assignments: Assignments
    latencies: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    sleepers_kept: int = 0

    def __post_init__(self) -> None:
        self.metadata = bearer_metadata(self.farm.token)
        self.operator = operator_pb2_grpc.OperatorServiceStub(self.channel)
        self.requests = work_requests_pb2_grpc.WorkRequestServiceStub(self.channel)

    async def holders(self) -> dict[str, set[str]]:
        """The workers of each scheduler address, once all four are connected."""
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                listed = await self.operator.ListWorkers(
                    operator_pb2.ListWorkersRequest(connected_only=True),
                    metadata=self.metadata, timeout=5,
                )  # fmt: skip
                if len(listed.workers) == 4 and all(w.scheduler for w in listed.workers):
                    held: dict[str, set[str]] = {a: set() for a in self.farm.addresses}
                    for worker in listed.workers:
                        held[worker.scheduler.split(" ")[0]].add(worker.name)
                    return held
            await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL the scheduler holding more workers; time the first
        assignment to one of them; start it again."""
        held = await self.holders()
        address = max(held, key=lambda a: len(held[a]))
        number = self.farm.addresses.index(address)
        child = self.farm.children[number]
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        self.latencies.append(await self.assignments.first_to(held[address], killed_at))
        await asyncio.to_thread(stop, child)
        await asyncio.to_thread(self.farm.start, number)

    async def pause_leader(self) -> None:
        """SIGSTOP the scheduler running maintenance, with a request bound to
        time out meanwhile, for twice the lease's TTL; count its refused
        writes once resumed; check the request's record is the new leader's."""
        await self.holders()
        child = await self.leader()
        submitted = await self.requests.Submit(SLEEPER, metadata=self.metadata, timeout=10)
        sleeper = await self.until(submitted.work_request.id, {pb.WORK_REQUEST_STATE_RUNNING})
        before = await asyncio.to_thread(scrape, child, REFUSED)
        os.kill(child.pid, signal.SIGSTOP)
        await asyncio.sleep(2 * TTL)
        resumed_at = time.time()
        os.kill(child.pid, signal.SIGCONT)
        await asyncio.sleep(3)  # it resumes, acts, learns it lost the lease
        self.refused.append(await asyncio.to_thread(scrape, child, REFUSED) - before)
        ended = await self.until(sleeper.id, {pb.WORK_REQUEST_STATE_COMPLETED})
        by_new_leader = ended.completed_at.ToNanoseconds() / 1e9 < resumed_at
        self.sleepers_kept += ended.error.reason == "timeout" and by_new_leader

    async def leader(self) -> Child:
        """The scheduler running maintenance, once one does (a lease of a
        scheduler killed a round ago may have to run out first)."""
        while True:
            for child in self.farm.children:
                if await asyncio.to_thread(scrape, child, LEADER) == 1.0:
                    return child
            await asyncio.sleep(0.2)

    async def until(
        self, work_request_id: str, states: set[pb.WorkRequestState.ValueType]
    ) -> pb.WorkRequest:
        """The request once in one of `states`."""
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                got = await self.requests.Get(
                    pb.GetRequest(id=work_request_id), metadata=self.metadata, timeout=5
                )
                if got.work_request.state in states:
                    return got.work_request
            await asyncio.sleep(0.05)


LEADER = "taskyard_maintenance_leader"
REFUSED = "taskyard_maintenance_writes_refused_total"


async def failover(rounds: int) -> None:
    with farm_of(2) as farm:
        both = ",".join(farm.addresses)
        runs = farm.root / "runs.txt"
        runs.touch()
        options = ("--executor", "process")  # its tasks write to `runs`
        env = {"TASKYARD_ALLOWED_COMMANDS": "sh"}
        with (
            real_workers(both, 2, 2, env, options, name="a-first"),
            real_workers(",".join(farm.addresses[::-1]), 2, 2, env, options, name="b-first"),
        ):
            async with many(both) as channel:
                await run_rounds(farm, channel, runs, rounds)


async def run_rounds(farm: Farm, channel: grpc.aio.Channel, runs: Path, rounds: int) -> None:
    assignments = Assignments(farm.token)
    following = [asyncio.create_task(assignments.follow(a)) for a in farm.addresses]
    submitter = Submitter(",".join(farm.addresses), farm.token, runs)
    stopping = asyncio.Event()
    submitting = asyncio.create_task(submitter.run(stopping))
    rounds_of = Failover(farm, channel, assignments)
    for number in range(1, rounds + 1):
        await asyncio.sleep(1)  # steady
        if number % 4 == 0:
            await rounds_of.pause_leader()
        else:
            await rounds_of.kill()
    stopping.set()
    await submitting
    for task in following:
        task.cancel()
    await report_failover(rounds_of, submitter, runs)


async def report_failover(rounds: Failover, submitter: Submitter, runs: Path) -> None:
    final = {pb.WORK_REQUEST_STATE_COMPLETED, pb.WORK_REQUEST_STATE_ABORTED}
    ended = {key: await rounds.until(work_request_id, final)
             for key, work_request_id in submitter.acknowledged.items()}  # fmt: skip
    notes = Counter(runs.read_text().splitlines())
    starts = {key: notes[f"start {key}"] for key in ended}
    ends = {key: notes[f"end {key}"] for key in ended}
    lost = sum(w.result != pb.WORK_REQUEST_RESULT_SUCCESS for w in ended.values())
    second = [key for key, w in ended.items() if w.attempt > 1]
    calls = f"{submitter.failed_calls} calls failed and were made again"
    print(f"acknowledged submits: {len(ended)} ({calls})")
    print(f"  lost (not completed with success): {lost}")
    print(f"  completed twice (their task ended twice): {sum(n > 1 for n in ends.values())}")
    print(f"  run again (their task started twice): {sum(n > 1 for n in starts.values())}")
    print(f"  completed without their task ending: {sum(n == 0 for n in ends.values())}")
    once = sum(starts[key] == 1 for key in second)
    print(f"  on a second attempt: {len(second)}; of those, their task started once: {once}")
    kills = sorted(rounds.latencies)
    print(f"SIGKILL -> first assignment to a moved worker, {len(kills)} kills: "
          f"p50 {statistics.median(kills):.2f} s, max {kills[-1]:.2f} s")  # fmt: skip
    print(f"resumed former leaders ({len(rounds.refused)}): maintenance writes refused "
          f"{[int(n) for n in rounds.refused]}; the request timed out meanwhile left as the "
          f"new leader wrote it: {rounds.sleepers_kept} of {len(rounds.refused)}")  # fmt: skip


async def noop_rate(schedulers: int, requests: int) -> float:
    """No-op requests per second through 4 simulated workers x 16 slots and 8
    submitting clients, split evenly between `schedulers`."""
    with farm_of(schedulers) as farm:
        channels = [many(address) for address in farm.addresses]
        try:
            done = asyncio.Event()
            workers = [SimulatedWorker(channels[n % schedulers], f"sim{n}", 16) for n in range(4)]
            serving = [asyncio.create_task(w.run(done)) for w in workers]
            await asyncio.sleep(1.0)  # sessions open
            metadata = bearer_metadata(farm.token)
            stubs = itertools.cycle(
                work_requests_pb2_grpc.WorkRequestServiceStub(c) for c in channels
            )
            request = pb.SubmitRequest(task_name="noop", task_data_json="{}")
            started = time.perf_counter()
            await run_concurrently(
                requests, 8, lambda: next(stubs).Submit(request, metadata=metadata)
            )
            while sum(w.completed for w in workers) < requests:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            done.set()
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)
        finally:
            for channel in channels:
                await channel.close(None)
    return requests / elapsed


async def throughput(requests: int, rounds: int) -> None:
    ratios, ones, twos = [], [], []
    for _ in range(rounds):
        one = await noop_rate(1, requests)
        two = await noop_rate(2, requests)
        ones.append(one)
        twos.append(two)
        ratios.append(two / one)
    print(f"no-op requests/s, one scheduler: {statistics.median(ones):.0f} "
          f"({min(ones):.0f}-{max(ones):.0f}); two: {statistics.median(twos):.0f} "
          f"({min(twos):.0f}-{max(twos):.0f}); two / one, median of {rounds} rounds: "
          f"{statistics.median(ratios):.2f} (goal >= 0.9)")  # fmt: skip


async def crossing(samples: int) -> None:
    """A change made through one scheduler, seen by a watcher on the other:
    from the submit's call to the watch's message, one at a time."""
    with farm_of(2) as farm:
        metadata = bearer_metadata(farm.token)
        async with many(farm.addresses[0]) as to_a, many(farm.addresses[1]) as to_b:
            on_a = work_requests_pb2_grpc.WorkRequestServiceStub(to_a)
            on_b = work_requests_pb2_grpc.WorkRequestServiceStub(to_b)
            watch = on_b.Watch(pb.WatchRequest(task_name="noop"), metadata=metadata)
            changes = aiter(watch)
            request = pb.SubmitRequest(task_name="noop")  # no worker: it stays pending
            await on_a.Submit(request, metadata=metadata)
            await anext(changes)  # the watch is open
            seen = []
            for _ in range(samples):
                started = time.perf_counter()
                await on_a.Submit(request, metadata=metadata)
                await anext(changes)
                seen.append(time.perf_counter() - started)
            watch.cancel()
    ms = [1000 * x for x in seen]
    print(f"submitted through one scheduler, seen by a watcher on the other, {samples} times: "
          f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
          f"max {max(ms):.1f} ms (goal: within 100 ms)")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    print(machine())
    if args.rounds:
        await failover(args.rounds)
    if args.crossings:
        await crossing(args.crossings)
    if args.requests:
        await throughput(args.requests, args.throughput_rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="failover rounds (0: none)")
    parser.add_argument("--crossings", type=int, default=300, help="changes timed across")
    parser.add_argument("--requests", type=int, default=3000, help="no-ops a throughput round")
    parser.add_argument("--throughput-rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
