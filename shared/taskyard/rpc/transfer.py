"""Client side of artifact transfers, shared by the CLI and the worker.

Uploads: hash each file (streaming), declare the artifact (with a key, so
that the declaration is safe to repeat), then send each file the scheduler
lacks in chunks of at most 1 MiB, resuming from the committed offset after a
cut stream; each step is tried again on UNAVAILABLE (a scheduler restarting,
or another taking over). Downloads: verify each file's digest and size, and
write it atomically (a temporary file renamed into place). Memory stays
bounded whatever the file size.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from taskyard.errors import FieldViolation, InvalidArgumentError, UnavailableError
from taskyard.rpc import status as rpc_status
from taskyard.rpc.credentials import MAX_CHUNK
from taskyard.v1 import artifacts_pb2, artifacts_pb2_grpc, common_pb2

T = TypeVar("T")

Progress = Callable[[int], None]


def _no_progress(_bytes: int) -> None:
    pass


def describe_file(path: Path, name: str) -> artifacts_pb2.ArtifactFile:
    """The manifest entry of a local file (its digest computed by streaming)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(MAX_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    content_type = mimetypes.guess_type(name)[0] or ""
    return artifacts_pb2.ArtifactFile(
        path=name, size=size, sha256=digest.hexdigest(), content_type=content_type
    )


async def _chunks(
    artifact_id: str, entry: artifacts_pb2.ArtifactFile, path: Path, offset: int, progress: Progress
) -> AsyncIterator[artifacts_pb2.UploadFileRequest]:
    name, size = entry.path, entry.size
    with open(path, "rb") as file:
        file.seek(offset)
        first = True
        while True:
            data = file.read(MAX_CHUNK)
            last = offset + len(data) >= size
            yield artifacts_pb2.UploadFileRequest(
                artifact_id=artifact_id if first else "",
                path=name if first else "",
                offset=offset,
                data=data,
                finish_write=last,
            )
            first = False
            offset += len(data)
            progress(len(data))
            if last:
                return


def _transient(error: BaseException) -> bool:
    return isinstance(error, UnavailableError)


#: How long an upload keeps trying while the scheduler is away: a person
#: waits a few seconds; a worker (whose lease outlives a scheduler's restart)
#: `WORKER_RETRY_FOR`, so that a task ending then does not fail for it.
RETRY_FOR = 3.0
WORKER_RETRY_FOR = 30.0


def _retrying(retry_for: float) -> AsyncRetrying:
    """Tries again on UNAVAILABLE (a scheduler restarting, or another taking
    over), backing off up to 2 s between tries, for `retry_for` seconds."""
    return AsyncRetrying(
        retry=retry_if_exception(_transient),
        wait=wait_random_exponential(multiplier=0.2, max=2),
        stop=stop_after_delay(retry_for),
        reraise=True,
    )


async def _again(call: Callable[[], Awaitable[T]], retry_for: float) -> T:
    """A unary call safe to repeat, made again on UNAVAILABLE (CreateArtifact
    is: its idempotency key makes the scheduler answer a repeat with what
    the lost call declared)."""
    async for attempt in _retrying(retry_for):
        with attempt:
            try:
                return await call()
            except grpc.aio.AioRpcError as error:
                raise rpc_status.from_rpc_error(error) from error
    raise AssertionError("unreachable: tenacity reraises")


async def _send_file(
    stub: artifacts_pb2_grpc.ArtifactServiceAsyncStub,
    metadata: Any,
    artifact_id: str,
    file: tuple[artifacts_pb2.ArtifactFile, Path],
    *,
    progress: Progress,
    retry_for: float,
) -> None:
    """Send one file, resuming from the committed offset after a transient failure.

    If the scheduler dropped the upload meanwhile (disk full, I/O error), the
    error that made it drop it is raised, not the NOT_FOUND of the retry.
    """
    entry, path = file
    query = artifacts_pb2.QueryUploadStatusRequest(artifact_id=artifact_id, path=entry.path)
    failure: UnavailableError | None = None
    async for attempt in _retrying(retry_for):
        with attempt:
            try:
                status = await stub.QueryUploadStatus(query, metadata=metadata)
                if status.complete:
                    return
                chunks = _chunks(artifact_id, entry, path, status.committed_size, progress)
                await stub.UploadFile(chunks, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                if failure is not None and error.code() == grpc.StatusCode.NOT_FOUND:
                    raise failure from error
                mapped = rpc_status.from_rpc_error(error)
                if isinstance(mapped, UnavailableError):
                    failure = mapped
                raise mapped from error


async def upload(
    stub: artifacts_pb2_grpc.ArtifactServiceAsyncStub,
    metadata: Any,
    *,
    category: str,
    files: Mapping[str, Path],
    work_request_id: str = "",
    lease: common_pb2.Lease | None = None,
    data_json: str = "{}",
    progress: Progress = _no_progress,
    retry_for: float = RETRY_FOR,
) -> artifacts_pb2.Artifact:
    """Upload `files` (artifact path -> local file) as one artifact; return
    it complete. The scheduler away is tried again for `retry_for` seconds."""
    manifest = [describe_file(path, name) for name, path in sorted(files.items())]
    request = artifacts_pb2.CreateArtifactRequest(
        category=category,
        data_json=data_json,
        work_request_id=work_request_id,
        lease=lease,
        files=manifest,
        idempotency_key=secrets.token_hex(16),
    )
    created = await _again(lambda: stub.CreateArtifact(request, metadata=metadata), retry_for)
    missing = set(created.missing_paths)
    progress(sum(e.size for e in manifest if e.path not in missing))  # deduplicated: not sent
    for entry in manifest:
        if entry.path in missing:
            await _send_file(
                stub, metadata, created.artifact.id, (entry, files[entry.path]),
                progress=progress, retry_for=retry_for,
            )  # fmt: skip
    query = artifacts_pb2.GetArtifactRequest(artifact_id=created.artifact.id)
    final = await _again(lambda: stub.GetArtifact(query, metadata=metadata), retry_for)
    return final.artifact


def safe_destination(directory: Path, name: str) -> Path:
    """Where a downloaded file goes: inside `directory`, whatever the scheduler says."""
    target = (directory / name).resolve()
    if directory.resolve() not in target.parents:
        raise InvalidArgumentError(
            f"refusing to write {name!r} outside {directory}",
            violations=[FieldViolation("path", "escapes the download directory")],
        )
    return target


async def download(
    stub: artifacts_pb2_grpc.ArtifactServiceAsyncStub,
    metadata: Any,
    artifact_id: str,
    directory: Path,
    *,
    paths: Sequence[str] = (),
    progress: Progress = _no_progress,
) -> list[Path]:
    """Download an artifact's files into `directory`; verify and write each atomically."""
    written: list[Path] = []
    current: _Incoming | None = None
    request = artifacts_pb2.DownloadArtifactRequest(artifact_id=artifact_id, paths=list(paths))
    try:
        async for message in stub.DownloadArtifact(request, metadata=metadata):
            if message.HasField("file"):
                if current is not None:
                    written.append(current.commit())
                current = _Incoming(message.file, safe_destination(directory, message.file.path))
            elif current is not None:
                current.write(message.offset, message.data)
                progress(len(message.data))
        if current is not None:
            written.append(current.commit())
    except grpc.aio.AioRpcError as error:
        raise rpc_status.from_rpc_error(error) from error
    finally:
        if current is not None:
            current.abandon()
    return written


class _Incoming:
    """One file being downloaded into a temporary file beside its destination."""

    def __init__(self, entry: artifacts_pb2.ArtifactFile, target: Path) -> None:
        self.entry = entry
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        self.temporary = Path(name)
        self.file = os.fdopen(descriptor, "wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, offset: int, data: bytes) -> None:
        if offset != self.size:
            raise UnavailableError(f"{self.entry.path}: chunk at {offset}, expected {self.size}")
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)

    def commit(self) -> Path:
        self.file.close()
        if (self.size, self.digest.hexdigest()) != (self.entry.size, self.entry.sha256):
            self.abandon()
            raise InvalidArgumentError(f"{self.entry.path}: the download does not match its digest")
        os.replace(self.temporary, self.target)
        return self.target

    def abandon(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)
