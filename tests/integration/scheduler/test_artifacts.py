"""Artifacts over gRPC: round trips, dedup, resume, refusals, failures."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from taskyard.errors import InvalidArgumentError
from taskyard.rpc import transfer
from taskyard.scheduler.blobs.local import LocalBlobStore
from taskyard.v1 import artifacts_pb2 as pb
from taskyard.v1 import common_pb2
from taskyard.v1 import work_requests_pb2 as wr_pb
from tests.integration.scheduler.harness import Harness, start_harness, stop_harness

MIB = 1024 * 1024


def write(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(bytes((seed + i * 7) % 251 for i in range(size)))
    return path


def entry(name: str, content: bytes) -> pb.ArtifactFile:
    return pb.ArtifactFile(path=name, size=len(content), sha256=hashlib.sha256(content).hexdigest())


def partials(harness: Harness) -> list[Path]:
    return list((harness.config.data_dir / "blobs" / "partial").iterdir())


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("size", [0, 10, MIB, 2 * MIB + 12345])
async def test_round_trip(harness: Harness, tmp_path: Path, size: int) -> None:
    source = write(tmp_path / "source.bin", size)
    artifact = await transfer.upload(
        harness.artifacts, harness.submitter, category="test", files={"dir/file.bin": source}
    )
    assert artifact.complete
    [written] = await transfer.download(
        harness.artifacts, harness.submitter, artifact.id, tmp_path / "out"
    )
    assert written == tmp_path / "out" / "dir" / "file.bin"
    assert written.read_bytes() == source.read_bytes()


async def test_known_content_is_not_sent_again(harness: Harness, tmp_path: Path) -> None:
    source = write(tmp_path / "a", 3 * MIB)
    await transfer.upload(harness.artifacts, harness.submitter, category="t", files={"a": source})
    created = await harness.artifacts.CreateArtifact(
        pb.CreateArtifactRequest(category="t", files=[entry("copy", source.read_bytes())]),
        metadata=harness.submitter,
    )
    assert list(created.missing_paths) == []
    assert created.artifact.complete


async def test_an_interrupted_upload_resumes_from_the_committed_offset(
    harness: Harness, tmp_path: Path
) -> None:
    content = write(tmp_path / "big", 3 * MIB).read_bytes()
    created = await harness.artifacts.CreateArtifact(
        pb.CreateArtifactRequest(category="t", files=[entry("big", content)]),
        metadata=harness.submitter,
    )
    artifact_id = created.artifact.id

    async def first_chunk_only() -> AsyncIterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(
            artifact_id=artifact_id, path="big", offset=0, data=content[:MIB]
        )

    cut = await harness.artifacts.UploadFile(first_chunk_only(), metadata=harness.submitter)
    assert (cut.committed_size, cut.artifact_complete) == (MIB, False)
    status = await harness.artifacts.QueryUploadStatus(
        pb.QueryUploadStatusRequest(artifact_id=artifact_id, path="big"), metadata=harness.submitter
    )
    assert (status.committed_size, status.complete) == (MIB, False)
    assert (
        await code_of(
            harness.artifacts.GetArtifact(
                pb.GetArtifactRequest(artifact_id=artifact_id), metadata=harness.submitter
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )  # invisible until complete

    async def the_rest() -> AsyncIterator[pb.UploadFileRequest]:
        for offset in range(MIB, len(content), MIB):
            yield pb.UploadFileRequest(
                artifact_id=artifact_id, path="big", offset=offset,
                data=content[offset : offset + MIB], finish_write=offset + MIB >= len(content),
            )  # fmt: skip

    done = await harness.artifacts.UploadFile(the_rest(), metadata=harness.submitter)
    assert (done.committed_size, done.artifact_complete) == (len(content), True)
    [written] = await transfer.download(
        harness.artifacts, harness.submitter, artifact_id, tmp_path / "o"
    )
    assert written.read_bytes() == content


async def test_a_declaration_repeated_with_its_key_names_the_same_artifact(
    harness: Harness, tmp_path: Path
) -> None:
    """A reply lost on the way (its scheduler gone): the repeat gets what the
    first call declared, with what it still lacks; not another artifact."""
    content = b"repeat me"
    stored = write(tmp_path / "stored", 100)
    await transfer.upload(
        harness.artifacts, harness.submitter, category="t", files={"known": stored}
    )
    known = entry("known", stored.read_bytes())  # complete at once below
    declare = pb.CreateArtifactRequest(
        category="t", files=[entry("f", content), known], idempotency_key="upload-1"
    )
    first = await harness.artifacts.CreateArtifact(declare, metadata=harness.submitter)
    again = await harness.artifacts.CreateArtifact(declare, metadata=harness.submitter)
    assert again.artifact.id == first.artifact.id
    assert list(again.missing_paths) == list(first.missing_paths) == ["f"]
    other = pb.CreateArtifactRequest(
        category="t", files=[entry("f", b"other")], idempotency_key="upload-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await harness.artifacts.CreateArtifact(other, metadata=harness.submitter)
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "was used for another artifact" in (reused.value.details() or "")
    # Keys are each caller's own: the same key from another is another artifact.
    theirs = await harness.artifacts.CreateArtifact(declare, metadata=harness.admin)
    assert theirs.artifact.id != first.artifact.id
    too_long = pb.CreateArtifactRequest(category="t", idempotency_key="k" * 201)
    assert (
        await code_of(harness.artifacts.CreateArtifact(too_long, metadata=harness.submitter))
        == grpc.StatusCode.INVALID_ARGUMENT
    )


async def upload_raw(
    harness: Harness, manifest: pb.ArtifactFile, chunks: list[tuple[int, bytes, bool]]
) -> grpc.StatusCode:
    created = await harness.artifacts.CreateArtifact(
        pb.CreateArtifactRequest(category="t", files=[manifest]), metadata=harness.submitter
    )

    async def stream() -> AsyncIterator[pb.UploadFileRequest]:
        for offset, data, finish in chunks:
            yield pb.UploadFileRequest(
                artifact_id=created.artifact.id, path=manifest.path, offset=offset, data=data,
                finish_write=finish,
            )  # fmt: skip

    code = await code_of(harness.artifacts.UploadFile(stream(), metadata=harness.submitter))
    gone = await code_of(
        harness.artifacts.QueryUploadStatus(
            pb.QueryUploadStatusRequest(artifact_id=created.artifact.id, path=manifest.path),
            metadata=harness.submitter,
        )
    )
    assert gone == grpc.StatusCode.NOT_FOUND  # no trace of the artifact
    assert partials(harness) == []  # no partial content
    return code


async def test_wrong_digest_wrong_size_truncated_and_oversize_are_refused(harness: Harness) -> None:
    content = b"x" * 1000
    good = entry("f", content)
    wrong_digest = pb.ArtifactFile(path="f", size=1000, sha256="0" * 64)
    for manifest, chunks in (
        (wrong_digest, [(0, content, True)]),
        (good, [(0, content[:10], True)]),  # truncated: finished early
        (good, [(0, content, False), (1000, b"more", True)]),  # beyond the manifest's size
        (good, [(0, content[:10], False), (500, content[500:], True)]),  # a gap
    ):
        assert await upload_raw(harness, manifest, chunks) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/\0/b", "a//b", "./a", ""])
async def test_bad_paths_are_refused_and_nothing_is_stored(harness: Harness, path: str) -> None:
    request = pb.CreateArtifactRequest(category="t", files=[entry(path, b"data")])
    assert await code_of(harness.artifacts.CreateArtifact(request, metadata=harness.submitter)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    listed = await harness.artifacts.ListArtifacts(
        pb.ListArtifactsRequest(), metadata=harness.submitter
    )
    assert list(listed.artifacts) == []


async def test_size_limits(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, max_file_size=100)
    try:
        request = pb.CreateArtifactRequest(category="t", files=[entry("big", b"x" * 101)])
        assert await code_of(
            harness.artifacts.CreateArtifact(request, metadata=harness.submitter)
        ) == (grpc.StatusCode.INVALID_ARGUMENT)
    finally:
        await stop_harness(harness)


class FullDisk(LocalBlobStore):
    """A blob store whose disk fills up after the first megabyte."""

    def append(self, key: str, offset: int, data: bytes) -> int:
        if offset >= MIB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().append(key, offset, data)


async def test_a_full_disk_ends_the_upload_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, blobs=FullDisk(tmp_path / "blobs"))
    try:
        source = write(tmp_path / "big", 3 * MIB)
        with pytest.raises(Exception, match="disk is full") as caught:
            await transfer.upload(
                harness.artifacts, harness.submitter, category="t", files={"big": source}
            )
        assert getattr(caught.value, "reason", "") == "DISK_FULL"
        assert partials(harness) == []
        listed = await harness.artifacts.ListArtifacts(
            pb.ListArtifactsRequest(), metadata=harness.submitter
        )
        assert list(listed.artifacts) == []
    finally:
        await stop_harness(harness)


async def test_a_worker_uploads_only_for_work_it_holds(harness: Harness, tmp_path: Path) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    work_request_id = await harness.submit()
    lease = (await worker.expect("assignment")).lease
    source = write(tmp_path / "log", 100)
    stolen = common_pb2.Lease(work_request_id=work_request_id, attempt=lease.attempt + 1)
    for wrong in (stolen, common_pb2.Lease(work_request_id="other", attempt=1)):
        with pytest.raises(Exception, match="does not hold the lease"):
            await transfer.upload(
                harness.artifacts, worker.metadata, category="t", files={"log": source},
                work_request_id=wrong.work_request_id, lease=wrong,
            )  # fmt: skip
    artifact = await transfer.upload(
        harness.artifacts, worker.metadata, category="t", files={"log": source},
        work_request_id=work_request_id, lease=lease,
    )  # fmt: skip
    got = await harness.work_requests.Get(
        wr_pb.GetRequest(id=work_request_id), metadata=harness.submitter
    )
    assert [a.id for a in got.artifacts] == [artifact.id]
    await worker.disconnect()


def test_downloads_never_escape_their_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        transfer.safe_destination(tmp_path, "../outside")


async def test_stale_partial_uploads_are_swept_with_their_artifacts(tmp_path: Path) -> None:
    harness = await start_harness(tmp_path, partial_upload_max_age=0.0)
    try:
        content = b"y" * 100
        created = await harness.artifacts.CreateArtifact(
            pb.CreateArtifactRequest(category="t", files=[entry("f", content)]),
            metadata=harness.submitter,
        )

        async def half() -> AsyncIterator[pb.UploadFileRequest]:
            yield pb.UploadFileRequest(
                artifact_id=created.artifact.id, path="f", offset=0, data=content[:50]
            )

        await harness.artifacts.UploadFile(half(), metadata=harness.submitter)
        assert partials(harness)
        assert await harness.running.scheduler.artifacts.sweep() == 1
        assert partials(harness) == []
        status = harness.artifacts.QueryUploadStatus(
            pb.QueryUploadStatusRequest(artifact_id=created.artifact.id, path="f"),
            metadata=harness.submitter,
        )
        assert await code_of(status) == grpc.StatusCode.NOT_FOUND
    finally:
        await stop_harness(harness)
