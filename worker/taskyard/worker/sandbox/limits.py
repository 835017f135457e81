"""Memory and process limits of an attempt's programs, and knowing which one
stopped them.

Where the worker can make control groups it does: cgroup v2 (a delegated
subtree; the worker moves itself into a leaf of its own cgroup first) or,
on hosts that still mount v1 hierarchies, the v1 `memory` and `pids`
controllers. An attempt's programs then live in a cgroup of their own: the
kernel stops them at the limit (the OOM killer past the memory limit, a
refused fork past the process limit) and counts it, which is how the record
can say which limit it was. Elsewhere the limits are rlimits set on the
sandbox's first process before it runs anything (`RLIMIT_AS`,
`RLIMIT_NPROC`, counted in the sandbox's own user namespace): they hold,
but a program past them only sees its allocation or fork refused, and which
limit it was cannot be told.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from taskyard.tasks.sandbox import LimitExceeded

log = logging.getLogger(__name__)
MB = 1024 * 1024
CONTROLLERS = ("memory", "pids")


class AttemptLimits(Protocol):
    """The limits of one attempt's programs."""

    def attach(self, pid: int) -> None:
        """Put a sandbox's first process, before it runs anything, under the limits."""
        ...

    def exceeded(self) -> LimitExceeded | None:
        """The limit the attempt's programs went past, if it can be told."""
        ...

    def release(self) -> None:
        """Stop whatever is still under the limits, and forget them."""
        ...


@dataclass
class CgroupLimits:
    """An attempt's cgroup (one directory in v2, one per controller in v1)."""

    directories: list[Path]
    #: (file, value) to write once the directories exist; missing files are skipped.
    settings: list[tuple[Path, str]]
    #: Where the kernel counts OOM kills and refused forks: (file, key).
    memory_events: tuple[Path, str]
    pids_events: tuple[Path, str]
    memory_mb: int
    processes: int
    _made: bool = False

    def _make(self) -> None:
        for directory in self.directories:
            directory.mkdir(exist_ok=True)
        for path, value in self.settings:
            if path.exists():
                path.write_text(value)
        self._made = True

    def attach(self, pid: int) -> None:
        if not self._made:
            self._make()
        for directory in self.directories:
            (directory / "cgroup.procs").write_text(str(pid))

    def exceeded(self) -> LimitExceeded | None:
        if not self._made:
            return None
        if _counter(*self.memory_events):
            message = f"it went past its memory limit of {self.memory_mb} MB"
            return LimitExceeded("memory-limit", message)
        if _counter(*self.pids_events):
            message = f"it went past its limit of {self.processes} processes"
            return LimitExceeded("process-limit", message)
        return None

    def release(self) -> None:
        if not self._made:
            return
        for directory in self.directories:
            _empty_and_remove(directory)
        self._made = False


def _counter(path: Path, key: str) -> int:
    """The value of `key` in a cgroup's flat-keyed events file."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    return 0


def _empty_and_remove(directory: Path, patience: float = 2.0) -> None:
    """SIGKILL every process in the cgroup, then remove it once empty."""
    deadline = time.monotonic() + patience
    while directory.exists():
        try:
            pids = (directory / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                log.warning("could not remove the cgroup %s", directory)
                return
            time.sleep(0.01)


@dataclass
class Rlimits:
    """Limits set on the sandbox's first process, inherited by every program."""

    memory_mb: int
    processes: int

    def attach(self, pid: int) -> None:
        memory = self.memory_mb * MB
        resource.prlimit(pid, resource.RLIMIT_AS, (memory, memory))
        # The sandbox's own init process counts among its user's processes.
        resource.prlimit(pid, resource.RLIMIT_NPROC, (self.processes + 1, self.processes + 1))

    def exceeded(self) -> LimitExceeded | None:
        return None

    def release(self) -> None:
        pass


def limits_for(limiter: dict[str, Any], name: str, memory_mb: int, processes: int) -> AttemptLimits:
    """The limits of the attempt `name` under the worker's limiter."""
    memory = str(memory_mb * MB)
    if limiter["kind"] == "cgroup2":
        directory = Path(limiter["parent"]) / name
        settings = [(directory / "memory.max", memory), (directory / "memory.swap.max", "0"),
                    (directory / "pids.max", str(processes))]  # fmt: skip
        return CgroupLimits(
            [directory],
            settings,
            (directory / "memory.events", "oom_kill"),
            (directory / "pids.events", "max"),
            memory_mb,
            processes,
        )
    if limiter["kind"] == "cgroup1":
        memory_dir, pids_dir = Path(limiter["memory"]) / name, Path(limiter["pids"]) / name
        settings = [(memory_dir / "memory.limit_in_bytes", memory),
                    (memory_dir / "memory.memsw.limit_in_bytes", memory),
                    (pids_dir / "pids.max", str(processes))]  # fmt: skip
        return CgroupLimits(
            [memory_dir, pids_dir],
            settings,
            (memory_dir / "memory.oom_control", "oom_kill"),
            (pids_dir / "pids.events", "max"),
            memory_mb,
            processes,
        )
    return Rlimits(memory_mb, processes)


# -- Finding what the host offers, once at the worker's start ----------------


def cgroup_paths(proc_self_cgroup: str) -> dict[str, str]:
    """Controller (or "" for the v2 hierarchy) -> this process's cgroup path."""
    found = {}
    for line in proc_self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def cgroup_mounts(mountinfo: str) -> dict[str, tuple[str, str]]:
    """Controller (or "" for cgroup2) -> (its mount point, the cgroup path
    mounted there)."""
    found: dict[str, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if len(fields) < 5 or len(kind) < 3:
            continue
        root, point = fields[3], fields[4]
        if kind[0] == "cgroup2":
            found.setdefault("", (point, root))
        elif kind[0] == "cgroup":
            for option in kind[2].split(","):
                if option in CONTROLLERS:
                    found.setdefault(option, (point, root))
    return found


def _own(controller: str, paths: dict[str, str], mounts: dict[str, tuple[str, str]]) -> Path | None:
    if controller not in paths or controller not in mounts:
        return None
    point, root = mounts[controller]
    path = paths[controller]
    relative = path[len(root) :] if root != "/" and path.startswith(root) else path
    return Path(point) / relative.lstrip("/")


def discover(
    worker: str, read: Callable[[str], str] = lambda p: Path(p).read_text()
) -> dict[str, Any]:
    """The limiter this worker can use: a cgroup v2 subtree it delegates to
    itself, v1 memory and pids cgroups it may create, or rlimits. `worker`
    names its cgroups (one worker's apart from another's)."""
    paths = cgroup_paths(read("/proc/self/cgroup"))
    mounts = cgroup_mounts(read("/proc/self/mountinfo"))
    for attempt in (_delegate_v2, _create_v1):
        with contextlib.suppress(OSError):
            found = attempt(worker, paths, mounts)
            if found is not None:
                return found
    return {"kind": "rlimit"}


def _delegate_v2(
    worker: str, paths: dict[str, str], mounts: dict[str, tuple[str, str]]
) -> dict[str, Any] | None:
    own = _own("", paths, mounts)
    if own is None or not set(CONTROLLERS) <= set((own / "cgroup.controllers").read_text().split()):
        return None
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    try:
        (own / "cgroup.subtree_control").write_text(enable)
    except OSError:  # processes live in it: move this one into a leaf first
        leaf = own / f"taskyard-{worker}-worker"
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        try:
            (own / "cgroup.subtree_control").write_text(enable)
        except OSError:
            (own / "cgroup.procs").write_text(str(os.getpid()))
            leaf.rmdir()
            return None
    parent = own / f"taskyard-{worker}"
    parent.mkdir(exist_ok=True)
    (parent / "cgroup.subtree_control").write_text(enable)
    return {"kind": "cgroup2", "parent": str(parent)}


def _create_v1(
    worker: str, paths: dict[str, str], mounts: dict[str, tuple[str, str]]
) -> dict[str, Any] | None:
    owns = [_own(controller, paths, mounts) for controller in CONTROLLERS]
    if any(own is None or not own.is_dir() for own in owns):
        return None
    found: dict[str, Any] = {"kind": "cgroup1"}
    try:
        for controller, own in zip(CONTROLLERS, owns, strict=True):
            assert own is not None
            parent = own / f"taskyard-{worker}"
            parent.mkdir(exist_ok=True)
            found[controller] = str(parent)
    except OSError:
        forget(found)
        raise
    return found


def forget(limiter: dict[str, Any]) -> None:
    """Remove the worker's cgroups (its attempts' are gone already)."""
    for key in ("parent", *CONTROLLERS):
        if key in limiter:
            with contextlib.suppress(OSError):
                Path(limiter[key]).rmdir()
