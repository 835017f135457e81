"""The sandbox adapter: each program in Linux namespaces of its own, made by
bubblewrap (`bwrap`), a well-kept tool, not code of ours.

A program gets new user, mount, PID, IPC, UTS and cgroup namespaces and,
unless its task asked for the network on a worker that allows it, a network
namespace with only its own loopback. It sees the host's system directories
read-only without what other users may not read there (or, in an
environment, that root filesystem read-only), the attempt's working
directory at /work, its own /tmp and /dev, its own /proc read-only with the
kernel's sensitive files masked (as Docker masks them), and an environment
of PATH, HOME, LANG and TMPDIR plus its task data's `env`. It holds no
capability and may not make user namespaces of its own. (Under a worker run
as root its user is root of its user namespace, as in a Docker container:
the read-only /proc keeps it from the kernel's settings. A worker run as an
unprivileged user gives its tasks that user.) When the program's main
process ends, its PID namespace ends with it: nothing it started, whatever
session it made, outlives it.

Starting one: bwrap builds the namespaces, says the pid of the sandbox's
first process (`--info-fd`) and waits (`--block-fd`) while that process is
put under the attempt's limits; then the program runs. bwrap reads its
options from a memfd (`--args`), so no host path shows in the sandbox's
process list.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from taskyard.tasks import process_groups
from taskyard.tasks.run_options import RunOptions
from taskyard.tasks.sandbox import LimitExceeded, PlainProgram, Program
from taskyard.worker.sandbox import host
from taskyard.worker.sandbox.limits import AttemptLimits
from taskyard.worker.sandbox.settings import TASK_PATH, WORK_DIR, SandboxSettings

#: What bwrap gives a program killed by a signal: 128 + its number, like a shell.
_SIGNALLED = range(129, 129 + 64)


def arguments(
    settings: SandboxSettings,
    options: RunOptions,
    work_dir: Path,
    root: Path | None,
    env: Mapping[str, str],
) -> list[str]:
    """bwrap's options for one program (everything but the fds and the command)."""
    arguments = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]
    arguments += ["--cap-drop", "ALL"]
    if options.network and settings.network:
        arguments.append("--share-net")
    arguments += environment_view(root) if root else host.system_view()
    arguments += host.hiding(settings.hidden) if not root else []
    arguments += ["--proc", "/proc", *host.masking_proc(), "--remount-ro", "/proc"]
    # Its tmpfs are bounded by its memory limit (rlimits alone would not
    # count what a program writes there).
    size = str(settings.granted(options)[0] * 1024 * 1024)
    arguments += ["--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm"]
    arguments += ["--size", size, "--tmpfs", "/tmp"]
    arguments += ["--bind", str(work_dir), WORK_DIR, "--chdir", WORK_DIR]
    variables = {"PATH": TASK_PATH, "HOME": WORK_DIR, "LANG": settings.lang, "TMPDIR": "/tmp"}
    arguments.append("--clearenv")
    for name, value in {**variables, **env}.items():
        arguments += ["--setenv", name, value]
    arguments += ["--remount-ro", "/"]
    return arguments


def environment_view(root: Path) -> list[str]:
    """bwrap arguments showing an environment's root filesystem read-only:
    each of its top-level entries on an empty root (so that /work, /tmp and
    the others can be made), links kept as links."""
    arguments: list[str] = []
    for entry in sorted(root.iterdir()):
        target = f"/{entry.name}"
        if target in {WORK_DIR, "/tmp", "/proc", "/dev"}:
            continue
        if entry.is_symlink():
            arguments += ["--symlink", os.readlink(entry), target]
        elif entry.is_dir() or entry.is_file():
            arguments += ["--ro-bind", str(entry), target]
    return arguments


class BwrapSandbox:
    """An attempt's sandbox: its working directory and limits; each program
    started in it gets namespaces of its own."""

    def __init__(
        self,
        settings: SandboxSettings,
        options: RunOptions,
        work_dir: Path,
        limits: AttemptLimits,
        root: Path | None = None,
    ) -> None:
        self.work_dir = work_dir
        self._settings = settings
        self._options = options
        self._limits = limits
        self._root = root

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> Program:
        options = arguments(self._settings, self._options, self.work_dir, self._root, env)
        info_read, info_write = os.pipe()
        block_read, block_write = os.pipe()
        args = os.memfd_create("bwrap-args")
        try:
            options += ["--info-fd", str(info_write), "--block-fd", str(block_read)]
            os.write(args, b"".join(a.encode() + b"\0" for a in options))
            os.lseek(args, 0, os.SEEK_SET)
            process = subprocess.Popen(
                [self._settings.bwrap, "--args", str(args), "--", *argv],
                pass_fds=(args, info_write, block_read),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                process_group=0,
                # The sandbox's first process is bwrap's own: its environ
                # shows in the sandbox's /proc, so it gets none of the worker's.
                env={},
            )
        finally:
            for fd in (args, info_write, block_read):
                os.close(fd)
        process_groups.started(process.pid)  # killed with the executor, the sandbox goes too
        try:
            first = _first_pid(info_read)
            if first is not None:
                self._limits.attach(first)
        except BaseException:
            os.close(block_write)
            process.kill()
            raise
        finally:
            os.close(info_read)
        os.write(block_write, b"x")
        os.close(block_write)
        return BwrapProgram(process, first, self._limits)

    def close(self) -> None:
        """Stop what is left of the attempt's programs and release its limits."""
        self._limits.release()


def _first_pid(info: int) -> int | None:
    """The sandbox's first process, from bwrap's `--info-fd` (None: bwrap
    failed before making it, and says why on the program's stderr)."""
    text = b""
    while chunk := os.read(info, 4096):
        text += chunk
    if not text:
        return None
    pid = json.loads(text).get("child-pid")
    return int(pid) if isinstance(pid, int) else None


class BwrapProgram(PlainProgram):
    """A program in its namespaces, seen through its bwrap process (which
    leads a process group, as a plain program does)."""

    def __init__(
        self, process: subprocess.Popen[bytes], first: int | None, limits: AttemptLimits
    ) -> None:
        super().__init__(process)
        self._first = first
        self._limits = limits

    def signal(self, signum: int) -> None:
        """SIGKILL ends the sandbox's first process, and so its PID namespace
        and everything in it; another signal goes to each process it holds."""
        if self._first is None:
            return
        if signum == signal.SIGKILL:
            _kill(self._first, signum)
            return
        for pid in _descendants(self._first):
            _kill(pid, signum)

    def limit_exceeded(self) -> LimitExceeded | None:
        return self._limits.exceeded()

    def wait(self) -> int:
        """bwrap ends once the sandbox's first process has, and with it the
        PID namespace; its status is the program's, a signal as 128 + its
        number (as a shell says it)."""
        code = super().wait()
        return -(code - 128) if code in _SIGNALLED else code


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (the sandbox's first process is its
    PID namespace's reaper: whatever its programs orphan stays below it)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                pending += children
    return found
