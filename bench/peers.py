"""Taskyard and Celery side by side: no-op tasks from submit to a visible result.

One client submits no-op tasks one call at a time (Celery: a `delay()` loop;
Taskyard: single `Submit` calls, at most 64 in flight, and, for high-rate
clients, one `SubmitStream` whose answers say each request was committed) until every result is
visible (Celery: `AsyncResult.get()`; Taskyard: the request seen completed on
a `Watch`). Pairs with the same number of task processes, in alternating
rounds: Taskyard 1 worker x 2 slots against Celery prefork concurrency 2,
1 x 8 against Celery threads concurrency 8. The bench starts its own
`redis-server` on a free loopback port; without it (or without Celery: `pip
install -e '.[bench]'`) it says so and runs Taskyard alone. Prints each
configuration's median and range of tasks/s and each process's CPU per task.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2_grpc

from support import (
    channel_to,
    free_port,
    machine,
    real_workers,
    scheduler_process,
    through_workers,
    wait_for_workers,
)

BENCH = Path(__file__).resolve().parent


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children."""
    try:
        process = psutil.Process(pid)
        processes = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for each in processes:
        try:
            times = each.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port, or None without one."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def celery_worker(redis: str, pool: str, concurrency: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PEERS_REDIS_URL": redis, "PYTHONPATH": str(BENCH)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", pool,
         "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def celery_round(redis: str, pool: str, concurrency: int, tasks: int) -> dict[str, float]:
    os.environ["PEERS_REDIS_URL"] = redis
    sys.path.insert(0, str(BENCH))
    import celery_app  # noqa: PLC0415 (configured by the variable above)

    celery_app.app.conf.broker_url = f"{redis}/0"
    celery_app.app.conf.result_backend = f"{redis}/1"
    with celery_worker(redis, pool, concurrency) as worker:
        celery_app.noop.delay().get(timeout=60)  # warm: the worker is up
        before = tree_cpu(worker.pid)
        started = time.perf_counter()
        results = [celery_app.noop.delay() for _ in range(tasks)]
        for result in results:
            result.get(timeout=300)
        elapsed = time.perf_counter() - started
        return {"rate": tasks / elapsed, "worker": (tree_cpu(worker.pid) - before) / tasks}


async def taskyard_round(
    slots: int, tasks: int, in_flight: int, stream: bool, prefetch: int
) -> dict[str, float]:
    with scheduler_process() as (scheduler, token):
        async with channel_to(scheduler.address) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            metadata = bearer_metadata(token)
            options = ["--prefetch", str(prefetch)]
            with real_workers(scheduler.address, 1, slots, options=options) as workers:
                await wait_for_workers(channel, token, 1)
                await through_workers(stub, metadata, 20, in_flight)  # warm
                cpu = {"scheduler": tree_cpu(scheduler.pid), "worker": tree_cpu(workers[0].pid)}
                started = time.perf_counter()
                await through_workers(stub, metadata, tasks, in_flight, stream=stream)
                elapsed = time.perf_counter() - started
                return {
                    "rate": tasks / elapsed,
                    "scheduler": (tree_cpu(scheduler.pid) - cpu["scheduler"]) / tasks,
                    "worker": (tree_cpu(workers[0].pid) - cpu["worker"]) / tasks,
                }


def summary(name: str, rounds: list[dict[str, float]]) -> str:
    rates = [r["rate"] for r in rounds]
    cpu = ", ".join(
        f"{key} {statistics.median(r[key] for r in rounds) * 1000:.2f} ms/task"
        for key in rounds[0]
        if key != "rate"
    )
    return (
        f"{name:<44} {statistics.median(rates):7.0f} tasks/s "
        f"({min(rates):.0f}-{max(rates):.0f}); CPU {cpu}"
    )


async def main(args: argparse.Namespace) -> None:
    print(machine())
    try:
        import celery  # noqa: F401, PLC0415
    except ImportError:
        celery_ok = False
        print("Celery is not installed (pip install -e '.[bench]'): Taskyard alone")
    else:
        celery_ok = True
    pairs = [(2, "prefork", 2), (8, "threads", 8)]
    with tempfile.TemporaryDirectory(), redis_server() as redis:
        if redis is None:
            print("redis-server is missing: Taskyard alone")
        for slots, pool, concurrency in pairs:
            # How Taskyard submits, and how many assignments its worker
            # holds beyond its slots (Celery's workers prefetch 4 a process).
            ways = {"Submit": (False, 0), "SubmitStream": (True, 0),
                    f"SubmitStream, --prefetch {slots}": (True, slots)}  # fmt: skip
            ours: dict[str, list[dict[str, float]]] = {how: [] for how in ways}
            theirs: list[dict[str, float]] = []
            for _ in range(args.rounds):
                for how, (stream, prefetch) in ways.items():
                    rate = await taskyard_round(slots, args.tasks, args.in_flight, stream, prefetch)
                    ours[how].append(rate)
                if redis is not None and celery_ok:
                    theirs.append(celery_round(redis, pool, concurrency, args.tasks))
            for how, rounds in ours.items():
                print(summary(f"Taskyard 1 worker x {slots}, {how}", rounds))
            if theirs:
                print(summary(f"Celery + Redis, {pool} concurrency {concurrency}", theirs))
                for how, rounds in ours.items():
                    ratio = statistics.median(r["rate"] for r in rounds) / statistics.median(
                        r["rate"] for r in theirs
                    )
                    print(f"  ratio Taskyard ({how}) / Celery (medians): {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
