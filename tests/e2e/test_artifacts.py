"""Artifacts produced by real tasks on a real worker are downloadable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from taskyard.rpc import transfer
from taskyard.v1 import artifacts_pb2_grpc
from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, scheduler, worker

pytestmark = pytest.mark.e2e


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SchedulerProcess, Client]]:
    with scheduler(tmp_path / "scheduler", "--auto-enable-workers") as process:
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", "--allow-command", "sh"):
                yield process, client
        finally:
            client.close()


def download(
    process: SchedulerProcess, client: Client, artifact_id: str, out: Path
) -> dict[str, bytes]:
    async def fetch() -> list[Path]:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = artifacts_pb2_grpc.ArtifactServiceStub(channel)
            return await transfer.download(stub, client.metadata, artifact_id, out)

    return {str(p.relative_to(out)): p.read_bytes() for p in asyncio.run(fetch())}


def artifacts_of(client: Client, work_request_id: str) -> dict[str, str]:
    got = client.work_requests.Get(pb.GetRequest(id=work_request_id), metadata=client.metadata)
    return {a.category: a.id for a in got.artifacts}


def test_a_command_s_outputs_and_logs(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    script = "mkdir -p out && echo built > out/result.txt && echo done; echo warn >&2"
    work_request_id = client.submit(
        "command", {"command": ["sh", "-c", script], "outputs": ["out/result.txt"]}
    )
    assert client.wait(work_request_id).result == pb.WORK_REQUEST_RESULT_SUCCESS
    found = artifacts_of(client, work_request_id)
    assert set(found) == {"taskyard:command-output", "taskyard:work-request-debug-logs"}
    outputs = download(process, client, found["taskyard:command-output"], tmp_path / "o")
    assert outputs == {"out/result.txt": b"built\n"}
    logs = download(process, client, found["taskyard:work-request-debug-logs"], tmp_path / "l")
    assert logs == {"stdout.txt": b"done\n", "stderr.txt": b"warn\n"}


def test_debug_logs_are_uploaded_also_when_the_task_raised(
    running: tuple[SchedulerProcess, Client], tmp_path: Path
) -> None:
    process, client = running
    work_request_id = client.submit("logsthenraises")
    done = client.wait(work_request_id)
    assert (done.result, done.error.reason) == (pb.WORK_REQUEST_RESULT_ERROR, "task-raised")
    found = artifacts_of(client, work_request_id)
    logs = download(process, client, found["taskyard:work-request-debug-logs"], tmp_path / "l")
    assert logs == {"before-the-fall.log": b"about to raise\n"}
    assert json.loads(client.get(work_request_id).task_data_json) == {}
