"""Two schedulers on one PostgreSQL database, workers on both, one killed
mid-stream: nothing acknowledged is lost, nothing runs twice, and an upload
and a log follower carry on through the other."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
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
    """Submits short commands, each with an idempotency key, keeping the ids
    acknowledged, retrying (the same key) while a scheduler is away."""

    def __init__(self, addresses: str, token: str) -> None:
        super().__init__(daemon=True)
        self._addresses, self._token = addresses, token
        self.acknowledged: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        data = '{"command": ["sh", "-c", "sleep 0.2; echo ran"]}'
        with channel_to(self._addresses) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            number = 0
            while not self.stop.is_set():
                request = pb.SubmitRequest(
                    task_name="command", task_data_json=data, idempotency_key=f"ha-{number}"
                )
                try:
                    response = stub.Submit(
                        request, metadata=bearer_metadata(self._token), timeout=5
                    )
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                self.acknowledged.append(response.work_request.id)
                number += 1
                time.sleep(0.02)


@contextmanager
def farm(tmp_path: Path) -> Iterator[tuple[SchedulerProcess, SchedulerProcess, str, ExitStack]]:
    """Schedulers a and b on one database and blob directory, and four
    workers, two that try a first and two b first."""
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        shared = ("--database", url, "--blob-dir", str(tmp_path / "blobs"))
        listen = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        a, b = (
            stack.enter_context(scheduler(tmp_path / name, *FAST, *shared, listen=address))
            for name, address in zip("ab", listen, strict=True)
        )
        for number in range(4):
            order = listen if number % 2 == 0 else listen[::-1]
            stack.enter_context(
                worker(",".join(order), tmp_path / f"w{number}", "--slots", "2", env=SH)
            )
        yield a, b, ",".join(listen), stack


def debug_logs(client: Client, work_request_id: str) -> int:
    """Complete debug-log artifacts of a request: one an attempt run to its
    end (a declaration cut off with its scheduler may stay incomplete)."""
    got = client.work_requests.Get(pb.GetRequest(id=work_request_id), metadata=client.metadata)
    return sum(
        a.category == "taskyard:work-request-debug-logs" and a.complete for a in got.artifacts
    )


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
        submitter = Submitter(both, token)
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
        # Nothing acknowledged lost, nothing run twice.
        for request in submitter.acknowledged:
            done = client.wait(request, timeout=120)
            assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, str(done)
            assert done.attempt == 1, str(done)  # adopted by b, not run again
            assert debug_logs(client, request) == 1, request  # it ran to its end once
        # The follower went on through b: every line, once, in order.
        assert follower.wait(timeout=120) == 0
        rest_of_it = follower.stdout.read()  # not communicate(): it would skip what is buffered
        expected = "".join(f"line {i}\n" for i in range(2, 41))
        assert rest_of_it.decode() == expected
