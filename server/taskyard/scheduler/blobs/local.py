"""Blob storage on the local filesystem, under the scheduler's data dir.

`objects/ab/cd/<sha256>-<size>` holds stored blobs; `partial/<key>` holds
uploads in progress. The digest is computed as chunks arrive; the hasher
stays in memory, and after a restart the partial prefix is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from taskyard.errors import InvalidArgumentError, invalid

READ_SIZE = 1024 * 1024


class LocalBlobStore:
    """A BlobStore in a directory."""

    def __init__(self, root: Path) -> None:
        self._objects = root / "objects"
        self._partial = root / "partial"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._partial.mkdir(parents=True, exist_ok=True)
        self._hashers: dict[str, tuple[int, hashlib._Hash]] = {}
        self._lock = threading.Lock()

    def _object(self, sha256: str, size: int) -> Path:
        return self._objects / sha256[:2] / sha256[2:4] / f"{sha256}-{size}"

    def _part(self, key: str) -> Path:
        return self._partial / key

    def has(self, sha256: str, size: int) -> bool:
        try:
            os.utime(self._object(sha256, size))  # found again: not for the collector
        except FileNotFoundError:
            return False
        return True

    def committed(self, key: str) -> int:
        try:
            return self._part(key).stat().st_size
        except FileNotFoundError:
            return 0

    def _hasher(self, key: str, size: int) -> hashlib._Hash:
        with self._lock:
            known = self._hashers.get(key)
        if known is not None and known[0] == size:
            return known[1]
        hasher = hashlib.sha256()  # resumed after a restart: hash the prefix again
        with open(self._part(key), "rb") as file:
            while chunk := file.read(READ_SIZE):
                hasher.update(chunk)
        return hasher

    def append(self, key: str, offset: int, data: bytes) -> int:
        part = self._part(key)
        size = self.committed(key)
        if offset != size:
            raise InvalidArgumentError(
                f"offset {offset} is not the committed size {size}; resume from {size}",
                reason="WRONG_OFFSET",
                metadata={"committed_size": str(size)},
            )
        hasher = hashlib.sha256() if size == 0 else self._hasher(key, size)
        mode = "xb" if size == 0 and not part.exists() else "ab"
        with open(part, mode) as file:
            file.write(data)
        hasher.update(data)
        with self._lock:
            self._hashers[key] = (size + len(data), hasher)
        return size + len(data)

    def finish(self, key: str, sha256: str, size: int) -> None:
        part = self._part(key)
        committed = self.committed(key)
        try:
            if committed != size:
                raise invalid(
                    "size",
                    f"{committed} bytes arrived, the manifest says {size}",
                    "CONTENT_MISMATCH",
                )
            digest = (
                self._hasher(key, committed).hexdigest()
                if committed
                else hashlib.sha256().hexdigest()
            )
            if digest != sha256:
                raise invalid(
                    "sha256",
                    f"the content's digest is {digest}, the manifest says {sha256}",
                    "CONTENT_MISMATCH",
                )
            target = self._object(sha256, size)
            target.parent.mkdir(parents=True, exist_ok=True)
            if committed:
                with open(part, "rb") as file:
                    os.fsync(file.fileno())
                os.replace(part, target)
            else:
                target.touch()
        finally:
            self.discard(key)

    def discard(self, key: str) -> None:
        with self._lock:
            self._hashers.pop(key, None)
        self._part(key).unlink(missing_ok=True)

    def read(self, sha256: str, size: int, offset: int, length: int) -> bytes:
        with open(self._object(sha256, size), "rb") as file:
            file.seek(offset)
            return file.read(length)

    def partial_keys_older_than(self, seconds: float) -> list[str]:
        limit = time.time() - seconds
        return [p.name for p in self._partial.iterdir() if p.stat().st_mtime < limit]

    def stored_older_than(self, seconds: float) -> Iterator[tuple[str, int]]:
        limit = time.time() - seconds
        for path in self._objects.glob("*/*/*"):
            sha256, _, size = path.name.partition("-")
            with contextlib.suppress(FileNotFoundError):
                if size.isdigit() and path.stat().st_mtime < limit:
                    yield sha256, int(size)

    def remove(self, sha256: str, size: int) -> None:
        self._object(sha256, size).unlink(missing_ok=True)
