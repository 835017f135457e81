"""Retention: what is finished and old goes, with its logs, artifacts and
contents; nothing pending or running is touched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from taskyard.rpc import transfer
from taskyard.scheduler.service import retention
from taskyard.v1 import operator_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.scheduler.harness import Harness, completion, started_report


async def test_prune_deletes_finished_requests_their_artifacts_and_contents(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BLOB_GRACE", 0.0)
    worker = await harness.new_worker()
    await worker.connect(slots=2)
    done = await harness.submit("noop")
    lease = (await worker.expect("assignment")).lease
    source = tmp_path / "log.txt"
    source.write_bytes(b"some output\n")
    await transfer.upload(
        harness.artifacts, worker.metadata, category="t", files={"log.txt": source},
        work_request_id=done, lease=lease,
    )  # fmt: skip
    worker.report(started_report(lease), completion(lease, workers_pb2.WORK_OUTCOME_SUCCESS))
    await worker.expect("ack")
    running = await harness.submit("noop", {"sleep": 60})
    await worker.expect("assignment")
    await worker.disconnect()
    pending = await harness.submit("noop")
    await asyncio.sleep(0.05)
    request = operator_pb2.PruneRequest()
    request.older_than.FromMilliseconds(10)
    pruned = await harness.operator.Prune(request, metadata=harness.admin)
    assert (pruned.work_requests, pruned.artifacts, pruned.blobs) == (1, 1, 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.get(done)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await harness.get(running)).state == pb.WORK_REQUEST_STATE_ASSIGNED
    assert (await harness.get(pending)).state == pb.WORK_REQUEST_STATE_PENDING
    objects = harness.config.data_dir / "blobs" / "objects"
    assert [p for p in objects.rglob("*") if p.is_file()] == []


async def test_recent_requests_are_kept(harness: Harness) -> None:
    await harness.submit("noop")
    request = operator_pb2.PruneRequest()
    request.older_than.FromSeconds(3600)
    pruned = await harness.operator.Prune(request, metadata=harness.admin)
    assert pruned.work_requests == 0
