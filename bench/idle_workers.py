"""Idle simulated workers in their own process, for `latency.py`.

Usage: idle_workers.py ADDRESS COUNT. Prints `ready` once the sessions are
open, then `assigned <perf_counter>` when an assignment arrives and `recorded`
when its completion is acknowledged. `time.perf_counter()` is the system-wide
monotonic clock, so the parent can compare it with its own readings. Runs until
stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import time

from taskyard.v1 import common_pb2

from support import SimulatedWorker, channel_to


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(address: str, count: int) -> None:
    async with channel_to(address) as channel:
        done = asyncio.Event()
        workers = [SimulatedWorker(channel, f"idle{i}", 1) for i in range(count)]

        def assigned(_lease: common_pb2.Lease) -> None:
            say(f"assigned {time.perf_counter()!r}")

        for worker in workers:
            worker.on_assignment = assigned
            worker.on_recorded = lambda: say("recorded")
        serving = [asyncio.create_task(w.run(done)) for w in workers]
        await asyncio.sleep(1.0)  # sessions open
        say("ready")
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes stdin
        done.set()
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
