"""The rules of artifacts that need no store: limits, manifests, paths,
who may touch an upload, and how a storage failure is said."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from taskyard.errors import (
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
    invalid,
)
from taskyard.scheduler.domain import Artifact, ArtifactFile, WorkRequest
from taskyard.scheduler.service.auth import Principal, owner_of, sees
from taskyard.scheduler.store.port import DISK_FULL_MESSAGE
from taskyard.tasks.run_options import RunOptions

MAX_CHUNK = 1024 * 1024
#: Categories only workers may create (debug logs and the like).
RESERVED_PREFIX = "taskyard:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Limits:
    """What one artifact may hold."""

    max_file_size: int = 10 * 1024**3
    max_artifact_size: int = 50 * 1024**3
    max_files: int = 10_000
    max_path_length: int = 1024
    #: Uploads untouched for this long are removed with their artifact.
    partial_max_age: float = 3600.0
    #: Bytes of unfinished uploads one caller may have declared at once.
    upload_quota: int = 10 * 1024**3


@dataclass(frozen=True)
class Chunk:
    """One message of an upload stream."""

    artifact_id: str
    path: str
    offset: int
    data: bytes
    finish: bool


def check_path(path: str, limits: Limits, field: str = "path") -> None:
    """A relative, normalized path: no `/` prefix, no empty, `.` or `..` parts, no NUL."""
    parts = path.split("/")
    if not path or "\0" in path or len(path) > limits.max_path_length:
        raise invalid(field, f"must be 1-{limits.max_path_length} characters without NUL")
    if path.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        raise invalid(field, f"{path!r} must be relative and normalized (no '', '.' or '..' parts)")
    if PurePosixPath(path).as_posix() != path:
        raise invalid(field, f"{path!r} is not normalized")


def check_manifest(files: list[ArtifactFile], limits: Limits) -> None:
    """Every path valid and unique, every size and digest plausible, totals within limits."""
    if len(files) > limits.max_files:
        raise invalid("files", f"at most {limits.max_files} files per artifact")
    seen: set[str] = set()
    for index, file in enumerate(files):
        where = f"files[{index}]"
        check_path(file.path, limits, f"{where}.path")
        if file.path in seen:
            raise invalid(f"{where}.path", f"{file.path!r} is listed twice")
        seen.add(file.path)
        if not 0 <= file.size <= limits.max_file_size:
            raise invalid(f"{where}.size", f"must be 0-{limits.max_file_size} bytes", "TOO_LARGE")
        if not _SHA256.match(file.sha256):
            raise invalid(f"{where}.sha256", "must be 64 lowercase hexadecimal digits")
    if sum(f.size for f in files) > limits.max_artifact_size:
        raise invalid(
            "files", f"at most {limits.max_artifact_size} bytes per artifact", "TOO_LARGE"
        )


def upload_key(artifact_id: str, file: ArtifactFile) -> str:
    """The partial blob of one file of one artifact."""
    return f"{artifact_id}-{file.sha256}-{file.size}"


def check_uploader(caller: Principal, artifact: Artifact) -> None:
    """Only whoever declared an artifact sees or touches its upload; to
    another tenant it does not exist."""
    if not sees(caller, artifact.tenant):
        raise NotFoundError(f"no artifact {artifact.id!r}", reason="ARTIFACT_NOT_FOUND")
    if artifact.created_by != owner_of(caller):
        raise PermissionDeniedError(
            f"artifact {artifact.id} is being uploaded by someone else", reason="NOT_UPLOADER"
        )


def artifacts_named_by(work_request: WorkRequest) -> tuple[str, ...]:
    """The artifacts a request's task data names: its inputs and its
    environment (its worker may read them)."""
    return RunOptions.named_in(work_request.task_data_json).artifacts


def io_error(error: OSError) -> UnavailableError:
    if error.errno == errno.ENOSPC:
        return ResourceExhaustedError(DISK_FULL_MESSAGE, reason="DISK_FULL")
    return UnavailableError(
        f"the scheduler could not store the upload: {error.strerror}", reason="IO_ERROR"
    )
