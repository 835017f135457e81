"""What an attacker or a careless client sends: refused clearly, stored never,
and nothing it does breaks a later read, a restart or another client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from google.protobuf import duration_pb2

from taskyard.rpc import status as rpc_status
from taskyard.rpc import transfer
from taskyard.rpc.credentials import bearer_metadata
from taskyard.scheduler.domain import Role
from taskyard.scheduler.server import secure_data_dir
from taskyard.v1 import artifacts_pb2 as art_pb
from taskyard.v1 import operator_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.scheduler.harness import Harness, start_harness, stop_harness

MIB = 1024 * 1024


async def refusal(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def restarted(harness: Harness) -> Harness:
    await stop_harness(harness)
    return await start_harness(harness.config.data_dir)


async def test_a_lone_surrogate_in_metadata_is_refused_and_the_scheduler_restarts(
    harness: Harness,
) -> None:
    worker = await harness.new_worker()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await worker.connect(metadata={"y": "\udfff"})  # json.dumps escapes it: "\udfff"
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    static = operator_pb2.SetWorkerMetadataRequest(
        name=worker.name, static_metadata_json='{"y": "\\udfff"}'
    )
    error = await refusal(harness.operator.SetWorkerMetadata(static, metadata=harness.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    again = await restarted(harness)
    try:
        listed = await again.operator.ListWorkers(
            operator_pb2.ListWorkersRequest(), metadata=again.admin
        )
        assert [w.name for w in listed.workers] == [worker.name]
    finally:
        await stop_harness(again)


async def test_a_timeout_beyond_the_limit_is_refused_and_lists_keep_working(
    harness: Harness,
) -> None:
    huge = pb.SubmitRequest(task_name="noop", timeout=duration_pb2.Duration(seconds=2**63 - 1))
    error = await refusal(harness.work_requests.Submit(huge, metadata=harness.submitter))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in rpc_status.from_rpc_error(error).violations] == ["timeout"]
    await harness.submit()
    listed = await harness.work_requests.List(pb.ListRequest(), metadata=harness.submitter)
    assert len(listed.work_requests) == 1


@pytest.mark.parametrize("method", ["WorkRequestService/Submit", "ArtifactService/UploadFile"])
async def test_undecodable_bytes_are_invalid_argument(harness: Harness, method: str) -> None:
    path = f"/taskyard.v1.{method}"
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # a length prefix running past the end
    call: Any
    if method.endswith("UploadFile"):
        call = harness.channel.stream_unary(path, None, None)(
            iter([garbage]), metadata=harness.submitter
        )
    else:
        call = harness.channel.unary_unary(path, None, None)(garbage, metadata=harness.submitter)
    error = await refusal(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_status.from_rpc_error(error).reason == "UNDECODABLE"


async def test_undecodable_bytes_from_a_stranger_are_unauthenticated(harness: Harness) -> None:
    call = harness.channel.unary_unary("/taskyard.v1.WorkRequestService/Get", None, None)(b"\xff")
    assert (await refusal(call)).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_pages_stay_under_the_message_limit(harness: Harness) -> None:
    big = {"command": ["echo", "x" * (900 * 1024)]}
    ids = [await harness.submit("command", big) for _ in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await harness.work_requests.List(
            pb.ListRequest(page_size=1000, page_token=token), metadata=harness.submitter
        )
        assert page.ByteSize() < 4 * MIB
        seen += [w.id for w in page.work_requests]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(ids, reverse=True)


async def test_a_submit_token_controls_only_its_own_requests(harness: Harness) -> None:
    _, other_secret = await harness.running.scheduler.tokens.create(Role.SUBMIT, "other")
    other = bearer_metadata(other_secret)
    mine = await harness.submit("noop", {"sleep": 30})
    abort = pb.AbortRequest(id=mine)
    error = await refusal(harness.work_requests.Abort(abort, metadata=other))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rpc_status.from_rpc_error(error).reason == "NOT_OWNER"
    aborted = await harness.work_requests.Abort(abort, metadata=harness.submitter)
    assert aborted.work_request.state == pb.WORK_REQUEST_STATE_ABORTED
    error = await refusal(harness.work_requests.Retry(pb.RetryRequest(id=mine), metadata=other))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    await harness.work_requests.Retry(pb.RetryRequest(id=mine), metadata=harness.admin)
    theirs = await harness.work_requests.Submit(pb.SubmitRequest(task_name="noop"), metadata=other)
    owner = theirs.work_request.owner
    assert owner.startswith("token:")
    assert owner != (await harness.get(mine)).owner
    listed = await harness.work_requests.List(
        pb.ListRequest(owner=owner), metadata=harness.submitter
    )
    assert [w.id for w in listed.work_requests] == [theirs.work_request.id]


async def test_a_worker_that_is_not_enabled_gets_nothing_but_its_session(
    harness: Harness,
) -> None:
    worker = await harness.new_worker(enable=False)
    for call in (
        harness.artifacts.ListArtifacts(art_pb.ListArtifactsRequest(), metadata=worker.metadata),
        harness.artifacts.GetArtifact(
            art_pb.GetArtifactRequest(artifact_id="x"), metadata=worker.metadata
        ),
        harness.artifacts.QueryUploadStatus(
            art_pb.QueryUploadStatusRequest(artifact_id="x", path="p"), metadata=worker.metadata
        ),
    ):
        error = await refusal(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert rpc_status.from_rpc_error(error).reason == "WORKER_DISABLED"
    error = await refusal(worker.connect())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def manifest(content: bytes, path: str = "f") -> art_pb.ArtifactFile:
    digest = hashlib.sha256(content).hexdigest()
    return art_pb.ArtifactFile(path=path, size=len(content), sha256=digest)


async def test_clients_attach_only_to_their_own_requests_and_never_reserved(
    harness: Harness,
) -> None:
    _, other_secret = await harness.running.scheduler.tokens.create(Role.SUBMIT, "other")
    theirs = await harness.submit()
    create = art_pb.CreateArtifactRequest(category="c", work_request_id=theirs)
    error = await refusal(
        harness.artifacts.CreateArtifact(create, metadata=bearer_metadata(other_secret))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    reserved = art_pb.CreateArtifactRequest(category="taskyard:work-request-debug-logs")
    error = await refusal(harness.artifacts.CreateArtifact(reserved, metadata=harness.submitter))
    assert rpc_status.from_rpc_error(error).reason == "CATEGORY_RESERVED"


async def test_only_the_uploader_sees_or_touches_an_upload(harness: Harness) -> None:
    _, other_secret = await harness.running.scheduler.tokens.create(Role.SUBMIT, "other")
    other = bearer_metadata(other_secret)
    content = b"hello" * 100
    created = await harness.artifacts.CreateArtifact(
        art_pb.CreateArtifactRequest(category="c", files=[manifest(content)]),
        metadata=harness.submitter,
    )
    artifact_id = created.artifact.id
    query = art_pb.QueryUploadStatusRequest(artifact_id=artifact_id, path="f")
    assert (await refusal(harness.artifacts.QueryUploadStatus(query, metadata=other))).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )

    async def bad_offset() -> AsyncIterator[art_pb.UploadFileRequest]:
        yield art_pb.UploadFileRequest(artifact_id=artifact_id, path="f", offset=7, data=b"x")

    error = await refusal(harness.artifacts.UploadFile(bad_offset(), metadata=other))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    status = await harness.artifacts.QueryUploadStatus(query, metadata=harness.submitter)
    assert status.committed_size == 0  # the upload is still there, untouched


async def test_a_stream_refused_midway_leaves_nothing(harness: Harness) -> None:
    files = [manifest(b"a" * 10, "one"), manifest(b"b" * 10, "two")]
    created = await harness.artifacts.CreateArtifact(
        art_pb.CreateArtifactRequest(category="c", files=files), metadata=harness.submitter
    )
    artifact_id = created.artifact.id

    async def two_paths() -> AsyncIterator[art_pb.UploadFileRequest]:
        yield art_pb.UploadFileRequest(artifact_id=artifact_id, path="one", data=b"a" * 5)
        yield art_pb.UploadFileRequest(artifact_id=artifact_id, path="two", data=b"b" * 5)

    error = await refusal(harness.artifacts.UploadFile(two_paths(), metadata=harness.submitter))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    query = art_pb.QueryUploadStatusRequest(artifact_id=artifact_id, path="one")
    gone = await refusal(harness.artifacts.QueryUploadStatus(query, metadata=harness.submitter))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert list((harness.config.data_dir / "blobs" / "partial").iterdir()) == []


async def test_unfinished_uploads_count_against_a_quota(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, upload_quota=1000)
    try:
        first = art_pb.CreateArtifactRequest(category="c", files=[manifest(b"1" * 600)])
        await harness.artifacts.CreateArtifact(first, metadata=harness.submitter)
        second = art_pb.CreateArtifactRequest(category="c", files=[manifest(b"2" * 600)])
        await harness.artifacts.CreateArtifact(second, metadata=harness.admin)  # its own quota
        error = await refusal(harness.artifacts.CreateArtifact(second, metadata=harness.submitter))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rpc_status.from_rpc_error(error).reason == "UPLOAD_QUOTA"
    finally:
        await stop_harness(harness)


async def test_registration_takes_a_unique_name_in_one_step(harness: Harness) -> None:
    names = [(await harness.new_worker("same", enable=False)).name for _ in range(3)]
    assert names[0] == "same"
    assert len(set(names)) == 3
    assert all(n.startswith("same-") and len(n) == len("same-") + 8 for n in names[1:])


async def test_any_worker_can_be_removed_however_far_it_got(harness: Harness) -> None:
    registered = await harness.new_worker("registered", enable=False)
    refused = await harness.new_worker("refused", enable=False)
    with pytest.raises(grpc.aio.AioRpcError):  # its hello is kept, its session refused
        await refused.connect()
    enabled = await harness.new_worker("enabled")
    twice = await harness.new_worker("twice")
    for client in (registered, refused, enabled):
        await harness.operator.RemoveWorker(
            operator_pb2.RemoveWorkerRequest(name=client.name), metadata=harness.admin
        )
    removals = [
        harness.operator.RemoveWorker(
            operator_pb2.RemoveWorkerRequest(name=twice.name), metadata=harness.admin
        )
        for _ in range(2)
    ]
    outcomes = await asyncio.gather(*removals, return_exceptions=True)
    codes = sorted(o.code().name if isinstance(o, grpc.aio.AioRpcError) else "OK" for o in outcomes)
    assert codes == ["NOT_FOUND", "OK"]
    listed = await harness.operator.ListWorkers(
        operator_pb2.ListWorkersRequest(), metadata=harness.admin
    )
    assert listed.workers == []


async def test_a_worker_cannot_take_a_secret_that_is_already_a_token(harness: Harness) -> None:
    secret = dict(harness.submitter)["authorization"].removeprefix("Bearer ")
    error = await refusal(
        harness.workers.Register(workers_pb2.RegisterRequest(name="thief", token=secret))
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert rpc_status.from_rpc_error(error).reason == "TOKEN_IN_USE"
    await harness.submit()  # the client's token still means the client


async def test_a_full_disk_is_resource_exhausted_and_passes(harness: Harness) -> None:
    engine = harness.running.scheduler.store.engine  # type: ignore[attr-defined]
    await harness.submit()
    with engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
    big = {"command": ["echo", "x" * 200_000]}

    def limit_pages(count: int) -> None:
        # Every connection of the store must see the cap: set it on each new one.
        store = harness.running.scheduler.store
        for connection in store._opened:  # type: ignore[attr-defined]
            sqlite = connection.connection.driver_connection
            sqlite.execute(f"PRAGMA max_page_count={count}")

    limit_pages(int(pages))
    request = pb.SubmitRequest(task_name="command", task_data_json=json.dumps(big))
    error = await refusal(harness.work_requests.Submit(request, metadata=harness.submitter))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "disk is full" in (error.details() or "")
    limit_pages(1_000_000)
    await harness.work_requests.Submit(request, metadata=harness.submitter)


async def test_a_stored_request_that_cannot_be_used_is_set_aside_at_start(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    kept = await harness.submit("noop", {"sleep": 1})
    damaged = await harness.submit("noop", {"sleep": 2})
    engine = harness.running.scheduler.store.engine  # type: ignore[attr-defined]
    await stop_harness(harness)
    with engine.begin() as connection:  # as if the task's schema changed since
        connection.execute(
            sqlalchemy.text("UPDATE work_requests SET task_data_json = :d WHERE id = :i"),
            {"d": '{"sleep": "soon"}', "i": damaged},
        )
    engine.dispose()
    with caplog.at_level(logging.ERROR):
        again = await start_harness(harness.config.data_dir)
    try:
        set_aside = await again.get(damaged)
        assert (set_aside.result, set_aside.error.reason) == (
            pb.WORK_REQUEST_RESULT_ERROR,
            "quarantined",
        )
        assert (await again.get(kept)).state == pb.WORK_REQUEST_STATE_PENDING
        assert sum("set aside" in r.getMessage() for r in caplog.records) == 1
    finally:
        await stop_harness(again)


def test_the_data_dir_is_private(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "blobs").mkdir(parents=True)
    (data_dir / "taskyard.db").write_text("")
    (data_dir / "admin.token").write_text("secret\n")
    for path in (data_dir, data_dir / "blobs", data_dir / "taskyard.db", data_dir / "admin.token"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    old = os.umask(0o022)
    try:
        with caplog.at_level(logging.WARNING):
            secure_data_dir(data_dir)
        (data_dir / "new").write_text("")
    finally:
        os.umask(old)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "blobs").stat().st_mode) == 0o700
    for name in ("taskyard.db", "admin.token", "new"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    assert any("admin.token was readable" in r.getMessage() for r in caplog.records)


async def test_slots_are_bounded(harness: Harness) -> None:
    worker = await harness.new_worker()
    error = await refusal(worker.connect(slots=2**32 - 1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    hello = workers_pb2.WorkerHello(slots=256, metadata_json="{}")
    assert hello.slots == 256


async def test_a_download_the_client_cancels_logs_nothing(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "big"
    source.write_bytes(os.urandom(8 * MIB))
    artifact = await transfer.upload(
        harness.artifacts, harness.submitter, category="c", files={"big": source}
    )
    with caplog.at_level(logging.WARNING):
        stream = harness.artifacts.DownloadArtifact(
            art_pb.DownloadArtifactRequest(artifact_id=artifact.id), metadata=harness.submitter
        )
        await anext(aiter(stream))
        stream.cancel()
        await asyncio.sleep(0.5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
