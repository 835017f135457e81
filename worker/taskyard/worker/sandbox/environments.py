"""Environments: root filesystems that tasks' programs run in, from artifacts.

A task's data names an artifact (`"environment": ID`) holding one tar
archive of a root filesystem (plain, gzip, bzip2 or xz; `docs/environments.md`
says how to make one with debootstrap). The worker downloads it once, its
digest checked on arrival, unpacks it and keeps it for later tasks, within a
bound in bytes, least recently used first out; an environment in use is
never removed. Unpacking trusts nothing in the archive: no path outside the
root, no hard link to outside it, no device or FIFO, no set-user-id bit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from taskyard.errors import FailedPreconditionError

log = logging.getLogger(__name__)

#: Downloads an artifact's files into a directory; returns their paths.
Fetch = Callable[[str, Path], Awaitable[list[Path]]]


class UnusableEnvironmentError(FailedPreconditionError):
    """An environment cannot be had: not a root filesystem archive, too large."""

    default_reason = "ENVIRONMENT_UNUSABLE"


@dataclass
class _Entry:
    root: Path
    size: int
    used_at: float
    users: int = 0


class Environments:
    """Unpacked environments under `directory`, at most `max_bytes` of them."""

    def __init__(self, directory: Path, max_bytes: int, fetch: Fetch) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._fetch = fetch
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        directory.mkdir(parents=True, exist_ok=True)
        for partial in directory.glob("*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        for record in directory.glob("*.json"):
            self._remember(record)

    def _remember(self, record: Path) -> None:
        root = record.with_suffix("")
        try:
            size = int(json.loads(record.read_text())["size"])
        except (OSError, ValueError, KeyError, TypeError):
            size = -1
        if size < 0 or not root.is_dir():
            record.unlink(missing_ok=True)
            shutil.rmtree(root, ignore_errors=True)
            return
        self._entries[root.name] = _Entry(root, size, record.stat().st_mtime)

    async def acquire(self, artifact_id: str) -> Path:
        """The unpacked root of an environment, fetched first if need be;
        held until `release()`."""
        lock = self._locks.setdefault(artifact_id, asyncio.Lock())
        async with lock:
            entry = self._entries.get(artifact_id)
            if entry is None:
                entry = self._entries[artifact_id] = await self._unpacked(artifact_id)
                self._evict()
            entry.users += 1
            entry.used_at = time.time()
            return entry.root

    def release(self, artifact_id: str) -> None:
        """A task is done with the environment."""
        entry = self._entries.get(artifact_id)
        if entry is not None:
            entry.users = max(0, entry.users - 1)
            self._evict()

    async def _unpacked(self, artifact_id: str) -> _Entry:
        partial = self._directory / f"{artifact_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            with tempfile.TemporaryDirectory(dir=self._directory) as download:
                files = await self._fetch(artifact_id, Path(download))
                if len(files) != 1:
                    raise UnusableEnvironmentError(
                        f"environment {artifact_id} must hold one tar archive, "
                        f"not {len(files)} files"
                    )
                size = await asyncio.to_thread(unpack, files[0], partial, self._max_bytes)
            root = self._directory / artifact_id
            partial.rename(root)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        (self._directory / f"{artifact_id}.json").write_text(json.dumps({"size": size}))
        log.info("environment %s unpacked (%d MB)", artifact_id, size >> 20)
        return _Entry(root, size, time.time())

    def _evict(self) -> None:
        """Forget the least recently used environments nobody uses, while
        over the bound."""
        total = sum(entry.size for entry in self._entries.values())
        for artifact_id, entry in sorted(self._entries.items(), key=lambda i: i[1].used_at):
            if total <= self._max_bytes:
                return
            if entry.users:
                continue
            del self._entries[artifact_id]
            (self._directory / f"{artifact_id}.json").unlink(missing_ok=True)
            shutil.rmtree(entry.root, ignore_errors=True)
            total -= entry.size


def unpack(archive: Path, root: Path, max_bytes: int) -> int:
    """Unpack a root filesystem archive into `root`; its size in bytes."""
    total = 0

    def safe(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        nonlocal total
        if member.ischr() or member.isblk() or member.isfifo():
            return None  # /dev comes from the sandbox, never from an archive
        member = tarfile.tar_filter(member, destination)  # inside root, no set-id bits
        if member.islnk():
            target = (Path(destination) / member.linkname).resolve()
            if not target.is_relative_to(Path(destination).resolve()):
                raise tarfile.OutsideDestinationError(member, str(target))
        total += member.size
        if total > max_bytes:
            raise UnusableEnvironmentError(
                f"the environment unpacks to more than {max_bytes >> 20} MB"
            )
        return member

    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter=safe)
    except (tarfile.TarError, EOFError, OSError) as error:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
        why = f"{archive.name} is not a usable root filesystem archive: {error}"
        raise UnusableEnvironmentError(why) from error
    return total
