"""The local blob store and the manifest rules."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from taskyard.errors import InvalidArgumentError
from taskyard.scheduler.blobs.local import LocalBlobStore
from taskyard.scheduler.domain import ArtifactFile
from taskyard.scheduler.service.artifact_rules import Limits, check_manifest, check_path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_append_finish_read(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    data = b"abc" * 1000
    assert blobs.append("k", 0, data[:1000]) == 1000
    assert blobs.append("k", 1000, data[1000:]) == 3000
    blobs.finish("k", digest(data), len(data))
    assert blobs.has(digest(data), len(data))
    assert blobs.read(digest(data), len(data), 10, 5) == data[10:15]
    assert blobs.committed("k") == 0


def test_a_restarted_store_resumes_an_upload_with_the_right_digest(tmp_path: Path) -> None:
    data = os.urandom(5000)
    LocalBlobStore(tmp_path).append("k", 0, data[:2000])
    again = LocalBlobStore(tmp_path)  # no hasher in memory: the prefix is hashed again
    assert again.committed("k") == 2000
    again.append("k", 2000, data[2000:])
    again.finish("k", digest(data), len(data))
    assert again.has(digest(data), len(data))


@pytest.mark.parametrize(("claimed_digest", "claimed_size"), [("0" * 64, 3), (digest(b"abc"), 4)])
def test_a_mismatch_keeps_nothing(tmp_path: Path, claimed_digest: str, claimed_size: int) -> None:
    blobs = LocalBlobStore(tmp_path)
    blobs.append("k", 0, b"abc")
    with pytest.raises(InvalidArgumentError):
        blobs.finish("k", claimed_digest, claimed_size)
    assert blobs.committed("k") == 0
    assert not blobs.has(claimed_digest, claimed_size)


def test_a_wrong_offset_is_refused_with_the_committed_size(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    blobs.append("k", 0, b"abc")
    with pytest.raises(InvalidArgumentError) as caught:
        blobs.append("k", 1, b"x")
    assert caught.value.metadata == {"committed_size": "3"}


def test_old_partials_are_found(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    blobs.append("old", 0, b"x")
    blobs.append("new", 0, b"x")
    past = time.time() - 3600
    os.utime(tmp_path / "partial" / "old", (past, past))
    assert blobs.partial_keys_older_than(600) == ["old"]


@pytest.mark.parametrize("path", ["a", "a/b.txt", "dir/sub/file", ".hidden", "a..b"])
def test_good_paths(path: str) -> None:
    check_path(path, Limits())


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/.", "a/", "nul\0byte", "x" * 2000],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        check_path(path, Limits())


def test_manifest_limits() -> None:
    limits = Limits(max_file_size=10, max_artifact_size=15, max_files=2)
    ok = ArtifactFile("a", 10, "0" * 64)
    check_manifest([ok], limits)
    for files in (
        [ArtifactFile("a", 11, "0" * 64)],  # file too large
        [ok, ArtifactFile("b", 10, "0" * 64)],  # artifact too large
        [ok, ok],  # the same path twice
        [ArtifactFile("a", 1, "0" * 64)] * 3,  # too many files
        [ArtifactFile("a", 1, "XYZ")],  # not a digest
    ):
        with pytest.raises(InvalidArgumentError):
            check_manifest(files, limits)
