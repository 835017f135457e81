"""Settling, at the worker's start, how its tasks' programs will run, and
refusing to start, in one line, when the sandbox cannot be made here."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from taskyard.errors import FailedPreconditionError
from taskyard.tasks.run_options import RunOptions
from taskyard.worker.metadata import total_memory
from taskyard.worker.sandbox import for_attempt, host, limits
from taskyard.worker.sandbox.settings import PROCESS, SandboxSettings

log = logging.getLogger("taskyard.worker")
MB = 1024 * 1024
#: A task's process (and thread) limit when the worker sets none.
DEFAULT_PROCESSES = 1024
HOW_TO_CHOOSE = (
    "install bubblewrap (Debian: apt install bubblewrap) where user namespaces are "
    "allowed, or run tasks unsandboxed on a trusted farm with --executor process"
)


def settle(
    executor: str, *, network: bool, memory_mb: int, processes: int, slots: int, data_dir: Path
) -> SandboxSettings:
    """The sandbox this worker offers, checked by starting one."""
    memory_mb = memory_mb or max(64, total_memory() // MB // max(slots, 1))
    processes = processes or DEFAULT_PROCESSES
    if executor == PROCESS:
        log.warning(
            "--executor process: tasks run unsandboxed, as this worker's user, with its "
            "environment, its files and the host's network in reach; only for a trusted farm"
        )
        return SandboxSettings(executor=PROCESS, memory_mb=memory_mb, processes=processes)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FailedPreconditionError(
            f"cannot sandbox tasks: bubblewrap (bwrap) is not installed; {HOW_TO_CHOOSE}",
            reason="SANDBOX_UNAVAILABLE",
        )
    settings = SandboxSettings(
        bwrap=bwrap,
        network=network,
        memory_mb=memory_mb,
        processes=processes,
        limiter=limits.discover(str(os.getpid())),
        hidden=host.hidden_paths([data_dir]),
        lang=os.environ.get("LANG", "C.UTF-8"),
    )
    try:
        _try(settings, data_dir)
    except BaseException:
        limits.forget(settings.limiter)
        raise
    return settings


def _try(settings: SandboxSettings, data_dir: Path) -> None:
    """Start one sandboxed program, under limits; FAILED_PRECONDITION saying
    why if that cannot be done here."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as work_dir:
        sandbox = for_attempt(settings, RunOptions(), Path(work_dir), f"probe-{os.getpid()}")
        try:
            program = sandbox.start(["true"], {})
            with program.stdout, program.stderr:
                said = program.stderr.read().decode(errors="replace").strip()
                program.stdout.read()
            code = program.wait()
        except OSError as error:
            said, code = str(error), -1
        finally:
            sandbox.close()
    if code != 0:
        first = said.splitlines()[0] if said else f"exit status {code}"
        raise FailedPreconditionError(
            f"cannot sandbox tasks here ({first}); {HOW_TO_CHOOSE}", reason="SANDBOX_UNAVAILABLE"
        )
