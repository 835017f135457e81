"""`taskyard demo`: what `make run` shows.

Starts a scheduler on a SQLite file in the data directory, submits a few
requests, shows the durable queue and why each request waits, then leaves
the scheduler running in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from taskyard.cli.errors import CliError
from taskyard.cli.output import one_line
from taskyard.cli.parsing import Subparsers
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import work_requests_pb2_grpc

SUBMISSIONS = [
    ("noop", {"sleep": 0.5}, 0),
    ("noop", {"result": False}, 5),
    ("noop", {}, 10),
]


def add_parser(subparsers: Subparsers) -> None:
    """Register the `demo` subcommand."""
    parser = subparsers.add_parser("demo", help="start a scheduler and show it at work")
    parser.add_argument("--data-dir", type=Path, default=Path(".taskyard"))
    parser.set_defaults(handler=run)


def _spawn_scheduler(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskyard.cli.main", "scheduler", "--data-dir", str(data_dir),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _address_of(scheduler: subprocess.Popen[str]) -> str:
    assert scheduler.stdout is not None
    for line in scheduler.stdout:
        if match := re.search(r"listening on (\S+)", line):
            return match.group(1)
    raise CliError(f"the scheduler exited with status {scheduler.wait()}; see its log above")


async def _show(address: str, token: str) -> None:
    metadata = bearer_metadata(token)
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
        for task, data, priority in SUBMISSIONS:
            request = pb.SubmitRequest(
                task_name=task, task_data_json=json.dumps(data), priority=priority
            )
            submitted = await stub.Submit(request, metadata=metadata)
            print(f"submitted {submitted.work_request.id}: {task} {json.dumps(data)} p{priority}")
        listed = await stub.List(pb.ListRequest(page_size=10), metadata=metadata)
        print("\nthe queue, newest first (kept in SQLite; it survives a restart):")
        for work_request in listed.work_requests:
            print(f"  {one_line(work_request)}")
        first = listed.work_requests[0].id
        explained = await stub.Explain(pb.ExplainRequest(id=first), metadata=metadata)
        print(f"\nwhy {first} is still pending: {explained.summary}")


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, which stops the scheduler cleanly at any point."""
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    scheduler = _spawn_scheduler(data_dir)
    try:
        address = _address_of(scheduler)
        token = (data_dir / "admin.token").read_text().strip()
        asyncio.run(_show(address, token))
        print(f"\nscheduler running at {address}, data in {data_dir}. Try, in another shell:")
        print(f"  export TASKYARD_SCHEDULER={address} TASKYARD_DATA_DIR={data_dir}")
        print("  .venv/bin/taskyard list        .venv/bin/taskyard tasks")
        print("Press Ctrl-C to stop.")
        scheduler.wait()
    except KeyboardInterrupt:
        print("\nstopping the scheduler...")
    finally:
        _stop(scheduler)
    # -SIGTERM: stopped by our SIGTERM before it had installed its handler.
    stopped = scheduler.returncode in {0, -signal.SIGTERM}
    print("scheduler stopped" if stopped else f"scheduler failed: status {scheduler.returncode}")
    return 0 if stopped else 1


def _stop(scheduler: subprocess.Popen[str]) -> None:
    """SIGTERM the scheduler we started, ignoring further Ctrl-C while it drains."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if scheduler.poll() is None:
            os.kill(scheduler.pid, signal.SIGTERM)
            scheduler.wait(30)
        if scheduler.stdout is not None:
            scheduler.stdout.close()
    finally:
        signal.signal(signal.SIGINT, previous)
