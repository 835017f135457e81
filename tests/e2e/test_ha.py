"""Two schedulers on one PostgreSQL database, workers on both, one killed
mid-stream: nothing acknowledged is lost, nothing runs twice, and an upload,
a log follower and a watch carry on through the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest

from taskyard.rpc import targets, transfer
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.v1 import artifacts_pb2 as art_pb
from taskyard.v1 import artifacts_pb2_grpc, work_requests_pb2_grpc
from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import TASKYARD, SchedulerProcess, free_port, scheduler, worker
from tests.integration.postgres import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "10", "--leader-ttl", "2",
        "--auto-enable-workers")  # fmt: skip
SH = {"TASKYARD_ALLOWED_COMMANDS": "sh"}
MIB = 1024 * 1024


def channel_to(addresses: str) -> grpc.Channel:
    """A channel to the first of several schedulers that answers, calls safe to
    repeat retried on the next."""
    options = [*CHANNEL_OPTIONS, ("grpc.service_config", targets.SERVICE_CONFIG)]
    return grpc.insecure_channel(targets.channel_target(addresses), options=options)


class Submitter(threading.Thread):
    """Submits short commands that note their start and end in `runs`, each
    with an idempotency key, keeping those acknowledged, trying the same key
    again while a scheduler is away."""

    def __init__(self, addresses: str, token: str, runs: Path) -> None:
        super().__init__(daemon=True)
        self._addresses, self._token, self._runs = addresses, token, runs
        self.acknowledged: dict[str, str] = {}  # key -> request id
        self.stop = threading.Event()

    def _request(self, key: str) -> pb.SubmitRequest:
        script = f"echo start {key} >> {self._runs}; sleep 0.2; echo end {key} >> {self._runs}"
        data = json.dumps({"command": ["sh", "-c", script]})
        return pb.SubmitRequest(task_name="command", task_data_json=data, idempotency_key=key)

    def run(self) -> None:
        with channel_to(self._addresses) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            number = 0
            while not self.stop.is_set():
                key = f"ha-{number}"
                try:
                    response = stub.Submit(
                        self._request(key), metadata=bearer_metadata(self._token), timeout=5
                    )
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                self.acknowledged[key] = response.work_request.id
                number += 1
                time.sleep(0.02)


@contextmanager
def farm(
    tmp_path: Path, *options: str
) -> Iterator[tuple[SchedulerProcess, SchedulerProcess, str, ExitStack]]:
    """Schedulers a and b (with FAST's `options`, and more) on one database
    and blob directory, and four workers, two that try a first and two b first."""
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        shared = ("--database", url, "--blob-dir", str(tmp_path / "blobs"))
        listen = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        a, b = (
            stack.enter_context(
                scheduler(tmp_path / name, *FAST, *options, *shared, listen=address)
            )
            for name, address in zip("ab", listen, strict=True)
        )
        for number in range(4):
            order = listen if number % 2 == 0 else listen[::-1]
            stack.enter_context(
                worker(",".join(order), tmp_path / f"w{number}", "--slots", "2",
                       "--executor", "process", env=SH)  # its tasks note their runs
            )  # fmt: skip
        yield a, b, ",".join(listen), stack


def test_one_of_two_schedulers_killed_mid_stream(tmp_path: Path) -> None:
    with farm(tmp_path) as (a, b, both, stack):
        token = (a.data_dir / "admin.token").read_text().strip()
        client = Client(b)
        stack.callback(client.close)
        client.wait_connected(4)
        # A log follower through a, and an upload begun through a.
        lines = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
        chatty = client.submit("command", {"command": ["sh", "-c", lines]})
        follower = subprocess.Popen(
            [*TASKYARD, "logs", chatty, "--follow"], env={**a.env(), "TASKYARD_SCHEDULER": both},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert follower.stdout is not None
        stack.callback(follower.stdout.close)
        stack.callback(follower.wait)
        stack.callback(follower.kill)  # then waited for, then its pipe closed
        assert follower.stdout.readline() == b"line 1\n"  # it follows, through a
        watcher = subprocess.Popen(
            [*TASKYARD, "watch", chatty], env={**a.env(), "TASKYARD_SCHEDULER": both},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(watcher.wait)
        stack.callback(watcher.kill)
        content = os.urandom(3 * MIB)
        (tmp_path / "data.bin").write_bytes(content)
        entry = transfer.describe_file(tmp_path / "data.bin", "data.bin")
        metadata = bearer_metadata(token)
        with grpc.insecure_channel(a.address) as to_a:
            stub = artifacts_pb2_grpc.ArtifactServiceStub(to_a)
            created = stub.CreateArtifact(
                art_pb.CreateArtifactRequest(category="data", files=[entry]), metadata=metadata
            )
            first = art_pb.UploadFileRequest(
                artifact_id=created.artifact.id, path="data.bin", offset=0, data=content[:MIB]
            )
            stub.UploadFile(iter([first]), metadata=metadata)
        runs = tmp_path / "runs.txt"
        submitter = Submitter(both, token, runs)
        submitter.start()
        stack.callback(submitter.stop.set)
        while len(submitter.acknowledged) < 20:
            time.sleep(0.05)
        os.kill(a.process.pid, signal.SIGKILL)  # mid-stream
        a.process.wait()
        acknowledged_before = len(submitter.acknowledged)
        while len(submitter.acknowledged) < acknowledged_before + 20:  # b takes them now
            time.sleep(0.05)
        submitter.stop.set()
        submitter.join(10)
        # The upload resumes through b from what a had committed.
        with channel_to(both) as channel:
            stub = artifacts_pb2_grpc.ArtifactServiceStub(channel)
            status = stub.QueryUploadStatus(
                art_pb.QueryUploadStatusRequest(artifact_id=created.artifact.id, path="data.bin"),
                metadata=metadata,
            )
            assert status.committed_size == MIB
            rest = [
                art_pb.UploadFileRequest(
                    artifact_id=created.artifact.id, path="data.bin", offset=offset,
                    data=content[offset : offset + MIB], finish_write=offset + MIB >= len(content),
                )
                for offset in range(MIB, len(content), MIB)
            ]  # fmt: skip
            stub.UploadFile(iter(rest), metadata=metadata)
        fetched = subprocess.run(
            [*TASKYARD, "artifacts", "download", created.artifact.id, "-o", str(tmp_path / "out")],
            env={**b.env(), "TASKYARD_TOKEN": token}, capture_output=True, check=False,
        )  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr
        assert (tmp_path / "out" / "data.bin").read_bytes() == content
        # Nothing acknowledged lost, nothing run twice: b adopted what ran
        # on a's workers. (An assignment that died with a before reaching
        # its worker is a second attempt, the task's first run.)
        ended = {key: client.wait(request, timeout=120)
                 for key, request in submitter.acknowledged.items()}  # fmt: skip
        notes = Counter(runs.read_text().splitlines())
        for key, done in ended.items():
            assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, str(done)
            assert (notes[f"start {key}"], notes[f"end {key}"]) == (1, 1), str(done)
        # The follower went on through b: every line, once, in order.
        assert follower.wait(timeout=120) == 0
        assert watcher.wait(timeout=120) == 0  # the watch, too, went on through b
        rest_of_it = follower.stdout.read()  # not communicate(): it would skip what is buffered
        expected = "".join(f"line {i}\n" for i in range(2, 41))
        assert rest_of_it.decode() == expected


def on(client: Client, scheduler: SchedulerProcess) -> set[str]:
    """The workers whose session `scheduler` holds."""
    return {w.name for w in client.workers() if w.scheduler.startswith(scheduler.address + " ")}


def test_a_scheduler_gone_silent_loses_its_workers_and_its_writes(tmp_path: Path) -> None:
    """SIGSTOP: no connection closes, nothing says it is gone (a pulled plug,
    a cut network). Its workers notice the silence and move to b, which adopts
    what they ran; resumed, a changes nothing."""
    with farm(tmp_path, "--lease-grace", "60") as (a, b, _, stack):
        client = Client(b)
        stack.callback(client.close)
        client.wait_connected(4)
        moving = on(client, a)
        assert moving  # two workers try a first
        runs = tmp_path / "runs.txt"
        script = f"echo start $0 >> {runs}; sleep 2; echo end $0 >> {runs}"
        requests = [
            client.submit("command", {"command": ["sh", "-c", script, f"r{n}"]}) for n in range(8)
        ]  # a slot each
        for request in requests:
            client.wait(request, {pb.WORK_REQUEST_STATE_RUNNING})
        os.kill(a.process.pid, signal.SIGSTOP)
        stack.callback(os.kill, a.process.pid, signal.SIGCONT)
        while not moving <= on(client, b):  # noticed, and moved
            time.sleep(0.2)
        for request in requests:
            done = client.wait(request, timeout=60)
            assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, str(done)
        os.kill(a.process.pid, signal.SIGCONT)
        a_client = Client(a)
        stack.callback(a_client.close)
        resumed = [a_client.wait(request) for request in requests]  # a answers again
        later = client.submit("command", {"command": ["sh", "-c", script, "later"]})
        assert client.wait(later).result == pb.WORK_REQUEST_RESULT_SUCCESS
        notes = Counter(runs.read_text().splitlines())
        for number, done in enumerate(resumed):
            assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, str(done)
            assert (notes[f"start r{number}"], notes[f"end r{number}"]) == (1, 1), str(done)
