"""Process-group helpers: find and stop every process of a group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group `pgid` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def live_children(pid: int) -> list[int]:
    """The live (not zombie) children of `pid`, read from its own /proc
    entries: a few reads, where scanning every process on the machine cost
    milliseconds after each task. With the executor a child subreaper, its
    children include every orphan of what its task started."""
    threads = f"/proc/{pid}/task"
    try:
        names = os.listdir(threads)
    except OSError:
        return []
    found = []
    for name in names:  # plain os calls: this runs after every task
        try:
            with open(f"{threads}/{name}/children", "rb") as children:
                found += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return [child for child in found if not _zombie(child)]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def signal_group(pgid: int, signum: int) -> None:
    """Send `signum` to a process group, if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


async def stop_group(pgid: int, grace: float) -> None:
    """SIGTERM the whole group, then SIGKILL what is left after `grace` seconds."""
    signal_group(pgid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + grace
    while group_members(pgid) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if group_members(pgid):
        signal_group(pgid, signal.SIGKILL)
