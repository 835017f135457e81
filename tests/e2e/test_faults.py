"""Faults injected into real processes: nothing acknowledged is lost, nothing
is done twice, no process outlives its worker, and workers come back by
themselves. Each test prints how long things took (`pytest -s`) but asserts
only what happened and in what order: the machines are shared, and times
are for `bench/faults.py`, which runs these at length for bench/README.md."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import work_requests_pb2_grpc
from tests.e2e.client import Client
from tests.e2e.processes import free_port, scheduler, worker
from tests.e2e.test_worker import marked_processes
from tests.integration.postgres import fresh_database

pytestmark = pytest.mark.e2e
LEASE_GRACE = 2.0
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", str(LEASE_GRACE), "--auto-enable-workers")
SLEEP = {"TASKYARD_ALLOWED_COMMANDS": "sleep"}
#: The CI share; bench/faults.py asks for more.
WORKER_KILLS = int(os.environ.get("TASKYARD_FAULT_WORKER_KILLS", "3"))
SCHEDULER_KILLS = int(os.environ.get("TASKYARD_FAULT_SCHEDULER_KILLS", "2"))


def figures(name: str, values: list[float]) -> str:
    line = (
        f"{name}: min {min(values):.2f}s, median {statistics.median(values):.2f}s, "
        f"max {max(values):.2f}s over {len(values)}"
    )
    print(f"\nfaults: {line}")
    return line


def until(condition: object, timeout: float, what: str) -> float:
    """Seconds until `condition()` held; AssertionError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_killed_workers_leave_no_process_and_lose_no_work(tmp_path: Path) -> None:
    requeues, gone = [], []
    with scheduler(tmp_path / "scheduler", *FAST) as process:
        client = Client(process)
        try:
            for round_ in range(WORKER_KILLS):
                marker = f"1.{round_:04d}1"
                request = client.submit("command", {"command": ["sleep", marker]})
                with worker(process.address, tmp_path / "victim", env=SLEEP) as victim:
                    client.wait(request, {pb.WORK_REQUEST_STATE_RUNNING}, timeout=30)
                    until(lambda m=marker: marked_processes(m), 10, "the task's sleep")
                    os.kill(victim.process.pid, signal.SIGKILL)
                    killed = time.monotonic()
                    gone.append(until(lambda m=marker: not marked_processes(m), 60, "orphans"))
                    back = client.wait(request, {pb.WORK_REQUEST_STATE_PENDING}, timeout=30)
                    requeues.append(time.monotonic() - killed)
                    assert back.attempt == 2
                with worker(process.address, tmp_path / "rescuer", env=SLEEP):
                    final = client.wait(request, timeout=60)  # done once, elsewhere
                assert (final.result, final.attempt) == (pb.WORK_REQUEST_RESULT_SUCCESS, 2)
        finally:
            client.close()
    figures("worker SIGKILL to every task process gone", gone)
    figures("worker SIGKILL to the request requeued", requeues)


class Submitter(threading.Thread):
    """Submits no-op requests one after another, keeping the acknowledged ids
    and riding out a scheduler that is away."""

    def __init__(self, address: str, token: str) -> None:
        super().__init__(daemon=True)
        self._address, self._token = address, token
        self.acknowledged: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            while not self.stop.is_set():
                try:
                    response = stub.Submit(
                        pb.SubmitRequest(task_name="noop"),
                        metadata=bearer_metadata(self._token),
                        timeout=2,
                    )
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                self.acknowledged.append(response.work_request.id)


@contextmanager
def database(kind: str) -> Iterator[tuple[str, ...]]:
    if kind == "sqlite":
        yield ()
        return
    with fresh_database() as url:
        yield ("--database", url)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_scheduler_kills_lose_nothing_and_workers_come_back_by_themselves(
    tmp_path: Path, kind: str
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    reconnects: list[float] = []
    with ExitStack() as running:  # every process started here is stopped at the end
        store = running.enter_context(database(kind))
        current = running.enter_context(scheduler(tmp_path / "s", *FAST, *store, listen=listen))
        token = (current.data_dir / "admin.token").read_text().strip()
        for number in range(3):
            running.enter_context(worker(listen, tmp_path / f"w{number}", "--slots", "2"))
        client = Client(current)
        running.callback(lambda: client.close())  # noqa: PLW0108 (the client changes)
        client.wait_connected(3)
        for _ in range(SCHEDULER_KILLS):
            submitter = Submitter(listen, token)
            submitter.start()
            time.sleep(1.0)  # submissions flow, and work runs
            os.kill(current.process.pid, signal.SIGKILL)
            current.process.wait()
            time.sleep(1.0)  # the scheduler is away
            current = running.enter_context(scheduler(tmp_path / "s", *FAST, *store, listen=listen))
            restarted = time.monotonic()
            client.close()
            client = Client(current)
            client.wait_connected(3, timeout=30)
            reconnects.append(time.monotonic() - restarted)
            submitter.stop.set()
            submitter.join(10)
            assert submitter.acknowledged
            for request in submitter.acknowledged:  # every acknowledged one survived, and ran
                assert client.wait(request, timeout=60).result == pb.WORK_REQUEST_RESULT_SUCCESS
    figures(f"scheduler restart to all 3 workers connected ({kind})", reconnects)


def test_a_worker_stopped_past_its_lease_is_requeued_refused_and_comes_back(
    tmp_path: Path,
) -> None:
    with scheduler(tmp_path / "scheduler", *FAST) as process:
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", env=SLEEP) as frozen:
                client.wait_connected(1)
                request = client.submit("command", {"command": ["sleep", "1"]})
                client.wait(request, {pb.WORK_REQUEST_STATE_RUNNING})
                os.kill(frozen.process.pid, signal.SIGSTOP)
                try:  # its session goes silent, then its lease expires
                    back = client.wait(request, {pb.WORK_REQUEST_STATE_PENDING}, timeout=30)
                    assert back.attempt == 2
                    time.sleep(1.0)  # meanwhile its task finished: a result for attempt 1
                finally:
                    os.kill(frozen.process.pid, signal.SIGCONT)
                resumed = time.monotonic()
                client.wait_connected(1, timeout=30)
                print(f"\nfaults: SIGCONT to connected again: {time.monotonic() - resumed:.2f}s")
                final = client.wait(request, timeout=60)
            assert (final.result, final.attempt) == (pb.WORK_REQUEST_RESULT_SUCCESS, 2)
            log = frozen.log.read_text()
            assert "refused" in log  # the late result of attempt 1 was turned down
        finally:
            client.close()


@pytest.mark.parametrize("grace", [3, 10])
def test_an_abort_ends_every_process_even_those_ignoring_sigterm(
    tmp_path: Path, grace: int
) -> None:
    marker = f"7{grace}.{time.time_ns() % 10**6}"
    ignore = f"trap '' TERM; (trap '' TERM; sleep {marker}; :) & sleep {marker}; wait"
    env = {"TASKYARD_ALLOWED_COMMANDS": "sh", "TASKYARD_ABORT_GRACE": str(grace)}
    with scheduler(tmp_path / "scheduler", *FAST) as process:
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", env=env):
                request = client.submit("command", {"command": ["sh", "-c", ignore]})
                client.wait(request, {pb.WORK_REQUEST_STATE_RUNNING})
                until(lambda: len(marked_processes(f"sleep {marker}")) >= 2, 10, "the sleeps")
                client.abort(request)
                took = until(lambda: not marked_processes(marker), grace + 60, "processes gone")
                assert client.wait(request).state == pb.WORK_REQUEST_STATE_ABORTED
        finally:
            client.close()
    print(f"\nfaults: abort to every process gone, grace {grace}s: {took:.2f}s")
