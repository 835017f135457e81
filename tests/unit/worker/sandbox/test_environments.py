"""Environments: hostile archives unpack safely, the cache stays within its bound."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from taskyard.worker.sandbox.environments import Environments, UnusableEnvironmentError, unpack


def archive(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_a_root_filesystem_unpacks(tmp_path: Path) -> None:
    tarball = archive(
        tmp_path / "ok.tar.gz",
        (entry("bin", tarfile.DIRTYPE, mode=0o755), b""),
        (entry("bin/busybox", mode=0o4755), b"#!binary"),
        (entry("bin/sh", tarfile.SYMTYPE, "busybox"), b""),
        (entry("etc/alternatives/editor", tarfile.SYMTYPE, "/usr/bin/vi"), b""),
        (entry("dev/sda", tarfile.BLKTYPE), b""),
        (entry("run/fifo", tarfile.FIFOTYPE), b""),
    )
    root = tmp_path / "root"
    assert unpack(tarball, root, 10**6) == len(b"#!binary")
    assert (root / "bin" / "sh").readlink() == Path("busybox")
    assert (root / "etc" / "alternatives" / "editor").readlink() == Path("/usr/bin/vi")
    assert not (root / "bin" / "busybox").stat().st_mode & 0o4000  # no set-user-id
    assert not (root / "dev" / "sda").exists()  # devices come from the sandbox only
    assert not (root / "run" / "fifo").exists()


@pytest.mark.parametrize(
    "hostile",
    [
        (entry("../escape"), b"x"),
        (entry("/abs/../../escape"), b"x"),
        (entry("link", tarfile.LNKTYPE, "../../outside"), b""),
    ],
)
def test_nothing_lands_outside_the_root(
    tmp_path: Path, hostile: tuple[tarfile.TarInfo, bytes]
) -> None:
    (tmp_path / "outside").write_text("the worker's")
    tarball = archive(tmp_path / "bad.tar.gz", hostile)
    with pytest.raises(UnusableEnvironmentError):
        unpack(tarball, tmp_path / "a" / "root", 10**6)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "a").exists()


def test_through_a_symlinked_directory_neither(tmp_path: Path) -> None:
    tarball = archive(
        tmp_path / "bad.tar.gz",
        (entry("up", tarfile.SYMTYPE, str(tmp_path)), b""),
        (entry("up/escape"), b"x"),
    )
    with pytest.raises(UnusableEnvironmentError):
        unpack(tarball, tmp_path / "root", 10**6)
    assert not (tmp_path / "escape").exists()


def test_an_archive_past_the_bound_or_not_an_archive_is_refused(tmp_path: Path) -> None:
    big = archive(tmp_path / "big.tar.gz", (entry("a"), b"x" * 2000))
    with pytest.raises(UnusableEnvironmentError, match="more than"):
        unpack(big, tmp_path / "r1", 1000)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnusableEnvironmentError, match="not a usable root filesystem"):
        unpack(tmp_path / "notes.txt", tmp_path / "r2", 1000)


async def test_the_cache_fetches_once_and_forgets_the_least_recently_used(tmp_path: Path) -> None:
    fetched: list[str] = []

    async def fetch(artifact_id: str, directory: Path) -> list[Path]:
        fetched.append(artifact_id)
        return [archive(directory / "root.tar.gz", (entry("file"), b"x" * 400))]

    cache = Environments(tmp_path / "cache", 1000, fetch)
    a = await cache.acquire("a")
    assert (a / "file").read_bytes() == b"x" * 400
    cache.release("a")
    await cache.acquire("a")
    cache.release("a")
    b = await cache.acquire("b")  # in use until released
    await cache.acquire("c")  # 1200 bytes: "a", used least recently and by nobody, goes
    assert fetched == ["a", "b", "c"]
    assert not a.exists()
    assert b.exists()
    again = Environments(tmp_path / "cache", 1000, fetch)  # a restarted worker keeps them
    await again.acquire("b")
    assert fetched == ["a", "b", "c"]
