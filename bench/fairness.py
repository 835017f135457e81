"""Teams sharing one farm: fair share, measured with a real scheduler and worker.

1 worker x 4 slots; tasks are `noop` sleeping 0.2 s.

1. A flood: tenant A submits 10,000, then tenant B submits 10. How long from
   B's submit to its first start and to its last end. Beside it, the same
   with B's 10 queued behind A's in one tenant (first in, first out, as
   before tenants), with a flood of 200 (its wait grows with the flood:
   N x 0.2 s / 4).
2. Weights 2:1: A and B both keep more work waiting than the worker can run,
   A with weight 2; the requests of each started in 60 s (all equally long:
   the ratio of their running shares), counted from a watch.

The 1,000-tenant matching figure is `matching.py`'s.

Run: .venv/bin/python bench/fairness.py [--flood 10000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import operator_pb2 as op_pb
from taskyard.v1 import operator_pb2_grpc, work_requests_pb2_grpc
from taskyard.v1 import work_requests_pb2 as pb

from support import channel_to, machine, real_workers, scheduler_process, wait_for_workers

TASK = json.dumps({"sleep": 0.2})
SLOTS = 4
Metadata = tuple[tuple[str, str], ...]


class Farm:
    """A scheduler with one worker of 4 slots, and what a benchmark calls."""

    def __init__(self, channel: grpc.aio.Channel, admin: str) -> None:
        self.admin = bearer_metadata(admin)
        self.requests = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
        self.operator = operator_pb2_grpc.OperatorServiceStub(channel)

    async def tenant(self, name: str, weight: float = 1.0) -> Metadata:
        """A submit token of tenant `name`, made with `weight`."""
        await self.operator.SetTenant(
            op_pb.SetTenantRequest(name=name, weight=weight), metadata=self.admin
        )
        created = await self.operator.CreateToken(
            op_pb.CreateTokenRequest(role=op_pb.TOKEN_ROLE_SUBMIT, tenant=name),
            metadata=self.admin,
        )
        return bearer_metadata(created.secret)

    async def submit(self, who: Metadata, count: int) -> list[str]:
        """`count` noops, in batches; their ids."""
        ids: list[str] = []
        while len(ids) < count:
            batch = [pb.SubmitRequest(task_name="noop", task_data_json=TASK)] * min(
                500, count - len(ids)
            )
            done = await self.requests.BatchSubmit(
                pb.BatchSubmitRequest(requests=batch), metadata=who
            )
            ids += [r.work_request.id for r in done.results]
        return ids

    async def ended(self, who: Metadata, ids: list[str]) -> list[pb.WorkRequest]:
        """The requests once every one has completed."""
        while True:
            found = [
                (await self.requests.Get(pb.GetRequest(id=i), metadata=who)).work_request
                for i in ids
            ]
            if all(w.state == pb.WORK_REQUEST_STATE_COMPLETED for w in found):
                return found
            await asyncio.sleep(0.1)

    async def busy(self) -> None:
        """Until every slot runs something."""
        while True:
            listed = await self.operator.ListTenants(
                op_pb.ListTenantsRequest(), metadata=self.admin
            )
            if sum(t.running for t in listed.tenants) >= SLOTS:
                return
            await asyncio.sleep(0.05)


@asynccontextmanager
async def farm() -> AsyncIterator[Farm]:
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            with real_workers(scheduler.address, 1, SLOTS):
                await wait_for_workers(channel, admin, 1)
                yield Farm(channel, admin)


def seconds_after(moment: float, stamp: Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9 - moment


async def flood(count: int, same_tenant: bool) -> tuple[float, float]:
    """Seconds from B's submit to its first start, and to its last end."""
    async with farm() as f:
        a = await f.tenant("a")
        b = a if same_tenant else await f.tenant("b")
        await f.submit(a, count)
        await f.busy()
        submitted = time.time()
        mine = await f.submit(b, 10)
        ended = await f.ended(b, mine)
        first = min(seconds_after(submitted, w.started_at) for w in ended)
        last = max(seconds_after(submitted, w.completed_at) for w in ended)
        return first, last


async def weighted(seconds: float) -> tuple[int, int]:
    """Requests of A (weight 2) and of B (weight 1) started in `seconds`,
    both saturating: equally long, so their running shares are in that
    ratio too."""
    async with farm() as f:
        a, b = await f.tenant("a", 2.0), await f.tenant("b", 1.0)
        enough = int(seconds * SLOTS / 0.2) + 200
        await asyncio.gather(f.submit(a, enough), f.submit(b, enough))
        await f.busy()
        starts = {"a": 0, "b": 0}
        watch = f.requests.Watch(
            pb.WatchRequest(states=[pb.WORK_REQUEST_STATE_RUNNING]), metadata=f.admin
        )

        async def count() -> None:
            async for change in watch:
                starts[change.work_request.tenant] += 1

        counting = asyncio.create_task(count())
        await asyncio.sleep(seconds)
        watch.cancel()
        await asyncio.gather(counting, return_exceptions=True)
        return starts["a"], starts["b"]


async def main(args: argparse.Namespace) -> None:
    print(machine())
    print(f"1 worker x {SLOTS} slots, noop tasks of 0.2 s")
    first, last = await flood(args.flood, same_tenant=False)
    print(f"A submits {args.flood:,}, then B 10: B's first start {first:.2f} s after its "
          f"submit, its last end {last:.2f} s after (goals 0.25 s, 1.5 s)")  # fmt: skip
    fifo_first, fifo_last = await flood(args.fifo_flood, same_tenant=True)
    print(f"one tenant (first in, first out), {args.fifo_flood} ahead: the 10's first start "
          f"{fifo_first:.1f} s after, last end {fifo_last:.1f} s (with {args.flood:,} ahead: "
          f"about {args.flood * 0.2 / SLOTS:.0f} s)")  # fmt: skip
    started_a, started_b = await weighted(args.seconds)
    ratio = started_a / started_b
    print(f"weights 2:1, both saturating, {args.seconds:.0f} s: started {started_a} : "
          f"{started_b}, ratio {ratio:.2f} ({100 * (ratio / 2 - 1):+.1f} % of 2:1; goal within "
          f"5 %)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=10_000)
    parser.add_argument("--fifo-flood", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
