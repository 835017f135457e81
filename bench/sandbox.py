"""What the sandbox costs: starting one, and throughput with real workers.

1. Start cost per program: `true` started and waited for through the worker's
   sandbox adapter (bubblewrap, limits by this machine's cgroups or rlimits)
   and through the plain-process adapter (`--executor process`), alternately,
   p50 and p99 of each.
2. Throughput with real scheduler and worker processes (1 worker x 2 slots):
   no-ops (which start no program) and `command true` (one program each),
   with the sandbox and without it, in alternating rounds of the same run;
   the ratios are sandbox / process.

Run: .venv/bin/python bench/sandbox.py [--samples 300] [--tasks 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from taskyard.rpc.credentials import bearer_metadata
from taskyard.tasks.run_options import RunOptions
from taskyard.v1 import work_requests_pb2_grpc
from taskyard.worker.sandbox import for_attempt, limits
from taskyard.worker.sandbox.probe import settle
from taskyard.worker.sandbox.settings import PROCESS, SANDBOX, SandboxSettings

from support import (
    channel_to,
    machine,
    percentile,
    real_workers,
    scheduler_process,
    through_workers,
    wait_for_workers,
)


def start_cost(settings: SandboxSettings, work_dir: Path, number: int) -> float:
    """Seconds to start `true` in a fresh attempt's sandbox and see it end."""
    started = time.perf_counter()
    sandbox = for_attempt(settings, RunOptions(), work_dir, f"bench-{os.getpid()}-{number}")
    program = sandbox.start(["true"], {})
    with program.stdout, program.stderr:
        program.stdout.read()
        program.stderr.read()
    assert program.wait() == 0
    sandbox.close()
    return time.perf_counter() - started


def start_costs(samples: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        sandboxed = settle(SANDBOX, network=False, memory_mb=512, processes=64, slots=1,
                           data_dir=Path(data_dir))  # fmt: skip
        plain = SandboxSettings(executor=PROCESS)
        times: dict[str, list[float]] = {"sandbox": [], "process": []}
        try:
            for number in range(samples):
                for name, settings in (("sandbox", sandboxed), ("process", plain)):
                    times[name].append(start_cost(settings, Path(data_dir), number))
        finally:
            limits.forget(sandboxed.limiter)
    print(f"start cost per program, {samples} each (limits by {sandboxed.limiter['kind']}):")
    for name, found in times.items():
        print(f"  {name:<8} p50 {percentile(found, 0.5) * 1000:6.2f} ms   "
              f"p99 {percentile(found, 0.99) * 1000:6.2f} ms")  # fmt: skip
    extra = [s - p for s, p in zip(times["sandbox"], times["process"], strict=True)]
    print(f"  the sandbox adds p50 {percentile(extra, 0.5) * 1000:.2f} ms")


async def round_(executor: str, task: str, data: str, tasks: int) -> float:
    """Tasks per second through one worker x 2 slots."""
    options = ["--executor", executor, "--allow-command", "true"]
    with scheduler_process() as (scheduler, token):
        async with channel_to(scheduler.address) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            metadata = bearer_metadata(token)
            with real_workers(scheduler.address, 1, 2, options=options):
                await wait_for_workers(channel, token, 1)
                await through_workers(stub, metadata, 20, 64, task=task, data=data)  # warm
                started = time.perf_counter()
                await through_workers(stub, metadata, tasks, 64, task=task, data=data)
                return tasks / (time.perf_counter() - started)


async def throughput(tasks: int, rounds: int) -> None:
    kinds = {"noop": ("noop", ""), "command true": ("command", json.dumps({"command": ["true"]}))}
    print(f"throughput, 1 worker x 2 slots, {tasks} tasks a round, {rounds} rounds:")
    for label, (task, data) in kinds.items():
        rates: dict[str, list[float]] = {SANDBOX: [], PROCESS: []}
        for _ in range(rounds):
            for executor in (SANDBOX, PROCESS):
                rates[executor].append(await round_(executor, task, data, tasks))
        medians = {e: statistics.median(r) for e, r in rates.items()}
        spread = {e: f"{min(r):.0f}-{max(r):.0f}" for e, r in rates.items()}
        print(f"  {label:<13} sandbox {medians[SANDBOX]:6.0f}/s ({spread[SANDBOX]}), "
              f"process {medians[PROCESS]:6.0f}/s ({spread[PROCESS]}), "
              f"ratio {medians[SANDBOX] / medians[PROCESS]:.2f}")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    print(machine())
    start_costs(args.samples)
    await throughput(args.tasks, args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
