"""The status page's cost: how fast the request list answers with 100,000
requests stored, and what five pages following the scheduler take from its
throughput.

Targets: the list page under 300 ms with 100,000 requests stored; throughput
with five pages open following updates at least 0.95 of without (both with
`--http`; the line without `--http` shows what serving metrics costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from throughput import scheduler_run

from taskyard.scheduler.domain import Result, State, WorkError, WorkRequest
from taskyard.scheduler.store.sql import SqlStore, sqlite_url

from support import Child, machine, scheduler_process

#: What each following page asks for (as a browser's EventSource would).
FOLLOWED = ("/", "/requests", "/requests?state=running", "/requests?task=noop", "/workers")
#: Recent: requests finished over `--keep-days` (30) ago would be pruned at start.
BASE = datetime.now(UTC) - timedelta(days=2)


def stored_request(number: int) -> WorkRequest:
    """The `number`th of the stored requests: mostly finished, some failed,
    aborted or pending, over two tasks, ten workers and three owners."""
    created = BASE + timedelta(milliseconds=number)
    task = "noop" if number % 3 else "command"
    data = '{"command": ["true"]}' if task == "command" else "{}"
    owner = "token:rare" if number % 1000 == 7 else f"token:{'ab'[number % 2]}"
    request = WorkRequest(
        id=f"{number:024x}", task_name=task, task_data_json=data, priority=0,
        created_at=created, queue_key=f"{number:024x}", owner=owner,
    )  # fmt: skip
    if number % 100 == 0:
        return request
    started, ended = created + timedelta(seconds=1), created + timedelta(seconds=3)
    finished = {
        "worker_name": f"w{number % 10}", "assigned_at": started, "started_at": started,
        "completed_at": ended, "updated_at": ended,
    }  # fmt: skip
    if number % 50 == 1:
        error = WorkError("aborted", "aborted by a user")
        return request.with_changes(state=State.ABORTED, error=error, **finished)
    result = Result.FAILURE if number % 10 == 2 else Result.SUCCESS
    return request.with_changes(state=State.COMPLETED, result=result, **finished)


def populate(data_dir: Path, count: int) -> None:
    """Store `count` requests in the scheduler's database before it starts."""
    store = SqlStore(sqlite_url(data_dir / "taskyard.db"))
    store.migrate()
    for start in range(0, count, 5000):
        with store.transaction() as tx:
            for number in range(start, min(start + 5000, count)):
                tx.insert_work_request(stored_request(number))
    store.close()


async def timed(http: aiohttp.ClientSession, url: str, rounds: int) -> list[float]:
    """Milliseconds of each of `rounds` fetches of the whole page (after two
    to warm up)."""
    times = []
    for round_ in range(rounds + 2):
        started = time.perf_counter()
        async with http.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {body[:200]!r}")
        if round_ >= 2:
            times.append((time.perf_counter() - started) * 1000)
    return times


async def list_pages(count: int, rounds: int) -> None:
    """The list page (and the others) with `count` requests stored."""
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-web-") as data_dir:
        started = time.perf_counter()
        populate(Path(data_dir), count)
        print(f"{count:,} requests stored in {time.perf_counter() - started:.0f} s")
        options = ("--http", "127.0.0.1:0")
        with scheduler_process(options=options, data_dir=data_dir) as (scheduler, _):
            middle = f"{count // 2:024x}"
            paths = {
                "requests, newest 50": "/requests",
                "state=completed": "/requests?state=completed",
                "state=pending (1%)": "/requests?state=pending",
                "task=command": "/requests?task=command",
                "worker=w7": "/requests?worker=w7",
                "owner=token:rare (0.1%)": "/requests?owner=token:rare",
                "page from the middle": f"/requests?before={middle}",
                "overview (counts all)": "/",
                "one request": f"/requests/{middle}",
                "workers": "/workers",
            }
            print(f"  {'page':<26} {'median ms':>10} {'p95 ms':>8}   target < 300 ms")
            async with aiohttp.ClientSession() as http:
                for label, path in paths.items():
                    times = await timed(http, scheduler.page + path, rounds)
                    p95 = statistics.quantiles(times, n=20, method="inclusive")[-1]
                    print(f"  {label:<26} {statistics.median(times):>10.1f} {p95:>8.1f}")


@contextmanager
def followers(scheduler: Child) -> Iterator[None]:
    """Five pages following the scheduler, in a process of their own (as
    browsers would be); says how many updates they received."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--follow", scheduler.page],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()  # "following": every stream is open
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        UPDATES.append(json.loads(output.strip() or "0"))


#: Updates the five pages received, per run.
UPDATES: list[int] = []


async def follow(page: str) -> None:
    """(The followers' process.) Follow the five pages until SIGTERM, then
    print how many updates arrived."""
    updates = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def one(http: aiohttp.ClientSession, path: str, opened: asyncio.Event) -> None:
        nonlocal updates
        async with http.get(f"{page}/live{path}") as response:
            opened.set()
            async for line in response.content:
                updates += line.startswith(b"event: update")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        opened = [asyncio.Event() for _ in FOLLOWED]
        streams = [
            asyncio.create_task(one(http, p, o)) for p, o in zip(FOLLOWED, opened, strict=True)
        ]
        await asyncio.gather(*(o.wait() for o in opened))
        print("following", flush=True)
        await stop.wait()
        for stream in streams:
            stream.cancel()
    print(updates, flush=True)


async def throughput(args: argparse.Namespace) -> None:
    """BatchSubmit throughput with five pages following, against without."""
    http = ("--http", "127.0.0.1:0")
    lines = {
        "--http, no page open": (http, False),
        "--http, five pages following": (http, True),
        "no --http": ((), False),
    }
    rates: dict[str, list[float]] = {label: [] for label in lines}
    for _ in range(args.rounds):
        for label, (options, following) in lines.items():
            rate, _ = await scheduler_run(
                args.requests, 8, 4, 4, 50, options=options,
                alongside=followers if following else lambda _: nullcontext(),
            )  # fmt: skip
            rates[label].append(rate)
    print(f"  {args.requests:,} no-op requests, BatchSubmit of 50, 8 simulated workers x 4 slots")
    print(f"  {'median of ' + str(args.rounds) + ' rounds (range)':<34}")
    base = rates["--http, no page open"]
    for label, found in rates.items():
        ratios = [rate / b for rate, b in zip(found, base, strict=True)]
        print(
            f"  {label:<34} {statistics.median(found):>7,.0f} req/s "
            f"({min(found):,.0f}-{max(found):,.0f})  ratio {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f})"
        )
    print(f"  updates the five pages received per run: {UPDATES}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stored", type=int, default=100_000, help="requests stored")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement")
    parser.add_argument("--fetches", type=int, default=20, help="timed fetches of each page")
    parser.add_argument("--requests", type=int, default=5000, help="requests a throughput run")
    parser.add_argument("--follow", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        await follow(args.follow)
        return
    print(f"machine: {machine()}")
    await list_pages(args.stored, args.fetches)
    print("scheduler throughput with status pages following:")
    await throughput(args)


if __name__ == "__main__":
    asyncio.run(main())
