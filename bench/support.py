"""Shared by the benchmarks: real processes to measure, and the bare-gRPC baseline.

The scheduler and the baseline server each run in their own process, so their
CPU time can be read from /proc without counting the load generator's.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from taskyard.protocol import PROTOCOL_VERSION
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata, new_token
from taskyard.tasks import Task
from taskyard.v1 import common_pb2, operator_pb2, operator_pb2_grpc, workers_pb2, workers_pb2_grpc
from taskyard.v1 import work_requests_pb2 as pb

BARE_SERVER = Path(__file__).with_name("bare_server.py")
REPO = Path(__file__).resolve().parents[1]
TASKYARD = [sys.executable, "-m", "taskyard.cli.main"]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(samples: list[float], fraction: float) -> float:
    """The `fraction` quantile of `samples`."""
    return statistics.quantiles(samples, n=1000, method="inclusive")[round(fraction * 1000) - 1]


def machine() -> str:
    """One line describing where the figures come from."""
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"


@dataclass
class Child:
    """A process we started, with the address it listens on."""

    process: subprocess.Popen[str]
    address: str
    #: Its status page, when it serves one (`--http`).
    page: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn(command: list[str], env: dict[str, str] | None = None) -> Child:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.search(r"listening on (\S+)(?: \(status page: (\S+)/\))?", line):
            return Child(process, match.group(1), match.group(2) or "")
    raise RuntimeError(f"{command[2:4]} exited with {process.wait()}")


def stop(child: Child) -> None:
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.process.wait()
    if child.process.stdout is not None:
        child.process.stdout.close()


@contextmanager
def scheduler_process(
    env: dict[str, str] | None = None, options: Sequence[str] = (), data_dir: str = ""
) -> Iterator[tuple[Child, str]]:
    """A scheduler on SQLite in `data_dir` (a temporary directory if none),
    with more `options`; yields it and the admin token."""
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-") as temporary:
        data_dir = data_dir or temporary
        command = [sys.executable, "-m", "taskyard.cli.main", "scheduler", "--data-dir", data_dir,
             "--listen", "127.0.0.1:0", "--auto-enable-workers", *options]  # fmt: skip
        if os.environ.get("BENCH_PROFILE"):
            command = [sys.executable, os.environ["BENCH_PROFILE"], data_dir]
        child = spawn(command, env)
        try:
            yield child, (Path(data_dir) / "admin.token").read_text().strip()
        finally:
            stop(child)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the tests' PostgreSQL server (the local one, or
    TASKYARD_TEST_POSTGRES_URL), dropped afterwards: the tests' own helper."""
    sys.path.insert(0, str(REPO))
    postgres = importlib.import_module("tests.integration.postgres")
    with postgres.fresh_database() as url:
        yield str(url)


@contextmanager
def real_workers(
    address: str,
    count: int,
    slots: int,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
    *,
    name: str = "real",
) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` real `taskyard worker` processes with `slots` executors each
    (and more `options`), named `name` and a number."""
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-workers-") as data_dir:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "taskyard.cli.main",
                    "worker",
                    "--scheduler",
                    address,
                    "--name",
                    f"{name}{n}",
                    "--slots",
                    str(slots),
                    "--data-dir",
                    f"{data_dir}/{n}",
                    *options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
                env={**os.environ, **(env or {})},
            )
            for n in range(count)
        ]
        try:
            yield workers
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()


async def wait_for_workers(channel: grpc.aio.Channel, admin: str, count: int) -> None:
    """Until `count` workers are connected."""
    operator = operator_pb2_grpc.OperatorServiceStub(channel)
    request = operator_pb2.ListWorkersRequest(connected_only=True)
    for _ in range(600):
        listed = await operator.ListWorkers(request, metadata=bearer_metadata(admin))
        if len(listed.workers) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the workers did not connect")


@contextmanager
def otlp_receiver() -> Iterator[Child]:
    """A test OTLP receiver in its own process, so decoding spans costs the load
    generator nothing. `spans_received` stops it and says how many arrived."""
    child = spawn([sys.executable, "-m", "taskyard.testing.otlp"])
    try:
        yield child
    finally:
        stop(child)


def spans_received(receiver: Child) -> int:
    """Stop the receiver; the number of spans it received, as it prints on exit."""
    receiver.process.send_signal(signal.SIGTERM)
    assert receiver.process.stdout is not None
    for line in receiver.process.stdout:
        if match := re.search(r"received (\d+) spans", line):
            return int(match.group(1))
    raise RuntimeError(f"the OTLP receiver exited with {receiver.process.wait()}")


@contextmanager
def bare_server() -> Iterator[Child]:
    """The baseline: a trivial unary gRPC servicer in its own process."""
    child = spawn([sys.executable, str(BARE_SERVER)])
    try:
        yield child
    finally:
        stop(child)


def bare_call(channel: grpc.aio.Channel) -> Any:
    """The baseline's one method: bytes in, the same bytes out."""
    return channel.unary_unary("/bench.Bare/Echo", None, None)


async def bare_cpu_per_call(calls: int, concurrency: int) -> tuple[float, float]:
    """CPU seconds the bare server spends per unary call, and calls per second."""
    with bare_server() as server:
        async with grpc.aio.insecure_channel(server.address, options=CHANNEL_OPTIONS) as channel:
            echo = bare_call(channel)
            await echo(b"warm-up")
            before, started = cpu_seconds(server.pid), time.perf_counter()
            await run_concurrently(calls, concurrency, lambda: echo(b"x" * 64))
            elapsed = time.perf_counter() - started
            return (cpu_seconds(server.pid) - before) / calls, calls / elapsed


async def run_concurrently(count: int, concurrency: int, make: Any) -> None:
    """Await `count` calls of `make()`, at most `concurrency` at a time."""
    remaining = iter(range(count))

    async def lane() -> None:
        for _ in remaining:
            await make()

    await asyncio.gather(*(lane() for _ in range(concurrency)))


class SimulatedWorker:
    """A worker that completes every assignment at once: with success, or
    with what `outcome_of` says of its lease."""

    def __init__(self, channel: grpc.aio.Channel, name: str, slots: int) -> None:
        self.stub = workers_pb2_grpc.WorkerServiceStub(channel)
        self.name = name
        self.slots = slots
        self.token = new_token()
        self.outgoing: asyncio.Queue[workers_pb2.SessionRequest | None] = asyncio.Queue()
        self.completed = 0
        self.on_assignment: Any = None
        self.on_recorded: Any = None
        self.outcome_of: Any = lambda _lease: workers_pb2.WORK_OUTCOME_SUCCESS

    async def run(self, done: asyncio.Event) -> None:
        """Register, open the session and serve until `done`."""
        await self.stub.Register(workers_pb2.RegisterRequest(name=self.name, token=self.token))
        hello = workers_pb2.WorkerHello(
            protocol_version=PROTOCOL_VERSION,
            metadata_json=json.dumps(Task.analyze_worker_all_tasks()),
            slots=self.slots,
        )
        self.outgoing.put_nowait(workers_pb2.SessionRequest(hello=hello))
        call = self.stub.Session(self._requests(), metadata=bearer_metadata(self.token))
        async for message in call:
            kind = message.WhichOneof("message")
            if kind == "assignments":
                self._complete([a.lease for a in message.assignments.assignments])
            elif kind == "acks":
                recorded = sum(map(_recorded, message.acks.acks))
                self.completed += recorded
                if recorded and self.on_recorded is not None:
                    self.on_recorded()
                if done.is_set():
                    break
        self.outgoing.put_nowait(None)

    def _complete(self, leases: list[common_pb2.Lease]) -> None:
        """Report each assignment started and finished, all in one message, as
        the real worker does with reports ready together."""
        reports = []
        for lease in leases:
            if self.on_assignment is not None:
                self.on_assignment(lease)
            reports.append(workers_pb2.WorkReport(started=workers_pb2.WorkStarted(lease=lease)))
            completed = workers_pb2.WorkCompleted(lease=lease, outcome=self.outcome_of(lease))
            reports.append(workers_pb2.WorkReport(completed=completed))
        self.outgoing.put_nowait(
            workers_pb2.SessionRequest(reports=workers_pb2.WorkReports(reports=reports))
        )

    async def _requests(self) -> AsyncIterator[workers_pb2.SessionRequest]:
        while (request := await self.outgoing.get()) is not None:
            yield request


def _recorded(ack: workers_pb2.ReportAck) -> bool:
    """Whether `ack` says a completion was recorded (not refused)."""
    if ack.HasField("problem"):
        raise RuntimeError(f"report refused: {ack.problem.message}")
    return ack.kind == workers_pb2.REPORT_KIND_COMPLETED


@asynccontextmanager
async def channel_to(address: str) -> AsyncIterator[grpc.aio.Channel]:
    """An insecure loopback channel with Taskyard's message limits."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        yield channel


async def through_workers(
    stub: Any,
    metadata: Any,
    tasks: int,
    in_flight: int,
    *,
    task: str = "noop",
    data: str = "",
    stream: bool = False,
) -> None:
    """Submit `tasks` requests of `task` one call at a time (`in_flight` at
    most), or on one SubmitStream with `stream`, until each is seen completed
    on a watch opened before the first submit."""
    watch = stub.Watch(pb.WatchRequest(states=[pb.WORK_REQUEST_STATE_COMPLETED]), metadata=metadata)
    seen: set[str] = set()
    submitted: set[str] = set()
    ready = asyncio.Event()

    async def follow() -> None:
        async for change in watch:
            seen.add(change.work_request.id)
            if len(submitted) == tasks and submitted <= seen:
                ready.set()
                return

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.1)  # the watch is open
    if stream:
        request = pb.SubmitStreamRequest(
            request=pb.SubmitRequest(task_name=task, task_data_json=data)
        )
        async for answer in stub.SubmitStream(iter([request] * tasks), metadata=metadata):
            submitted.add(answer.work_request.id)
    else:
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                request = pb.SubmitRequest(task_name=task, task_data_json=data)
                response = await stub.Submit(request, metadata=metadata)
                submitted.add(response.work_request.id)

        await asyncio.gather(*(one() for _ in range(tasks)))
    if submitted <= seen:
        ready.set()
    await asyncio.wait_for(ready.wait(), 600)
    watch.cancel()
    following.cancel()
