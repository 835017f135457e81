"""`taskyard demo`: what `make run` shows.

Starts a scheduler on a SQLite file in the data directory and two workers,
submits a few `noop` and `command` requests, shows how each ended and where
the commands' artifacts, then leaves everything running in the foreground
until Ctrl-C (or SIGTERM, or SIGHUP: the terminal closed), which stops the
workers, then the scheduler. Should the demo itself be killed, its children
get SIGTERM from the kernel (`taskyard.lifetime`): nothing is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from taskyard.cli.errors import CliError
from taskyard.cli.output import state_name
from taskyard.cli.parsing import Subparsers
from taskyard.lifetime import die_with_parent_of
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.v1 import operator_pb2, operator_pb2_grpc, work_requests_pb2_grpc
from taskyard.v1 import work_requests_pb2 as pb

TASKYARD = [sys.executable, "-m", "taskyard.cli.main"]
WORKERS = 2
SUBMISSIONS: list[tuple[str, dict[str, object]]] = [
    ("noop", {"sleep": 0.5}),
    ("noop", {"result": False}),
    ("command", {"command": ["echo", "hello from taskyard"]}),
    ("command", {"command": ["uname", "-sm"]}),
]
FINAL = {pb.WORK_REQUEST_STATE_COMPLETED, pb.WORK_REQUEST_STATE_ABORTED}


def add_parser(subparsers: Subparsers) -> None:
    """Register the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="start a scheduler and two workers; show them work",
        description="start a scheduler and two workers; show them work (what `make run` does)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".taskyard"), help="where they keep their data"
    )
    parser.add_argument(
        "--http",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where the scheduler serves its status page (default: a free loopback port)",
    )
    parser.set_defaults(handler=run)


def _spawn(args: list[str], log: Path | None = None) -> subprocess.Popen[str]:
    output = open(log, "a", encoding="utf-8") if log else subprocess.PIPE  # noqa: SIM115
    try:
        return subprocess.Popen(
            [*TASKYARD, *args], stdout=output, stderr=output if log else None,
            text=True, start_new_session=True,
            # The demo starts its children before any thread of its own.
            preexec_fn=die_with_parent_of(os.getpid()),  # noqa: PLW1509
        )  # fmt: skip
    finally:
        if log and not isinstance(output, int):
            output.close()


def _addresses_of(scheduler: subprocess.Popen[str]) -> tuple[str, str]:
    """The scheduler's gRPC address and its status page's."""
    assert scheduler.stdout is not None
    for line in scheduler.stdout:
        if match := re.search(r"listening on (\S+) \(status page: (\S+)\)", line):
            return match.group(1), match.group(2)
    raise CliError(f"the scheduler exited with status {scheduler.wait()}; see its log above")


async def _wait_for_workers(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    operator = operator_pb2_grpc.OperatorServiceStub(channel)
    for _ in range(300):
        listed = await operator.ListWorkers(
            operator_pb2.ListWorkersRequest(connected_only=True), metadata=metadata
        )
        if len(listed.workers) >= WORKERS:
            print(f"workers connected: {', '.join(w.name for w in listed.workers)}")
            return
        await asyncio.sleep(0.1)
    raise CliError("the workers did not connect; see their logs in the data directory")


async def _show(address: str, token: str) -> None:
    metadata = bearer_metadata(token)
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        await _wait_for_workers(channel, metadata)
        stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
        ids = []
        for task, data in SUBMISSIONS:
            request = pb.SubmitRequest(task_name=task, task_data_json=json.dumps(data))
            ids.append((await stub.Submit(request, metadata=metadata)).work_request.id)
            print(f"submitted {ids[-1]}: {task} {json.dumps(data)}")
        print()
        for work_request_id in ids:
            last = None
            async for change in stub.Watch(pb.WatchRequest(id=work_request_id), metadata=metadata):
                last = change.work_request
            if last is None or last.state not in FINAL:
                raise CliError(f"the watch of {work_request_id} ended early")
            print(f"{last.id}  {last.task_name:<8} {state_name(last):<20} on {last.worker_name}")
        print("\nwhat the command tasks produced (debug logs hold their stdout and stderr):")
        for work_request_id in ids:
            got = await stub.Get(pb.GetRequest(id=work_request_id), metadata=metadata)
            for artifact in got.artifacts:
                names = ", ".join(f.path for f in artifact.files)
                print(f"  {work_request_id}: artifact {artifact.id} ({artifact.category}): {names}")


def _executor() -> list[str]:
    """The workers' sandbox where bubblewrap works here; else, for the demo
    only, plain processes (a real worker refuses to start instead)."""
    bwrap = shutil.which("bwrap")
    tried = bwrap and subprocess.run(
        [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--", "true"],
        capture_output=True,
        check=False,
    )
    if tried and tried.returncode == 0:
        print("workers run each task sandboxed (bubblewrap)")
        return []
    print("bubblewrap is not usable here: the demo's workers run tasks unsandboxed "
          "(--executor process); install bubblewrap to see the sandbox")  # fmt: skip
    return ["--executor", "process"]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or SIGTERM (what `make` forwards when it is
    killed), either of which stops everything cleanly at any point."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    if isinstance(sys.stdout, io.TextIOWrapper):  # show each line at once, even through a pipe
        sys.stdout.reconfigure(line_buffering=True)
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    scheduler = _spawn(["scheduler", "--data-dir", str(data_dir / "scheduler"),
                        "--listen", "127.0.0.1:0", "--http", args.http,
                        "--auto-enable-workers"])  # fmt: skip
    workers: list[subprocess.Popen[str]] = []
    try:
        address, page = _addresses_of(scheduler)
        print(f"scheduler listening on {address} (data in {data_dir / 'scheduler'})")
        print(f"status page: {page}  (Prometheus metrics: {page}metrics)")
        executor = _executor()
        for number in range(1, WORKERS + 1):
            workers.append(_spawn(
                ["worker", "--scheduler", address, "--name", f"demo-{number}",
                 "--data-dir", str(data_dir / f"worker-{number}"), *executor,
                 "--allow-command", "echo", "--allow-command", "uname"],
                log=data_dir / f"worker-{number}.log",
            ))  # fmt: skip
        token = (data_dir / "scheduler" / "admin.token").read_text().strip()
        asyncio.run(_show(address, token))
        print(f"\nworker logs: {data_dir}/worker-*.log. Try, in another shell:")
        print(f"  export TASKYARD_SCHEDULER={address} TASKYARD_DATA_DIR={data_dir / 'scheduler'}")
        print('  .venv/bin/taskyard submit command --data \'{"command": ["echo", "hi"]}\' --wait')
        print("  .venv/bin/taskyard list     .venv/bin/taskyard workers list")
        print(
            "  .venv/bin/taskyard artifacts list  .venv/bin/taskyard artifacts download ID -o out"
        )
        print(f"Watch them on the status page: {page}")
        print("Scheduler and workers keep running; press Ctrl-C to stop them.")
        scheduler.wait()
    except KeyboardInterrupt:
        print("\nstopping the workers, then the scheduler...")
    finally:
        for process in [*workers, scheduler]:
            _stop(process)
    stopped = all(p.returncode in {0, -signal.SIGTERM} for p in [*workers, scheduler])
    print("all stopped" if stopped else "something did not stop cleanly; see the logs")
    return 0 if stopped else 1


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM a process we started, ignoring further Ctrl-C or SIGTERM while
    it stops."""
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in stops}
    try:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(90)
        if process.stdout is not None:
            process.stdout.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
