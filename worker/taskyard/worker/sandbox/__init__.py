"""Where a worker's tasks run their programs: the sandbox adapter (Linux
namespaces through bubblewrap, with limits), chosen by default, and the
plain-process one (`--executor process`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from taskyard.tasks.run_options import RunOptions
from taskyard.tasks.sandbox import PlainProcesses, Sandbox
from taskyard.worker.sandbox.bwrap import BwrapSandbox
from taskyard.worker.sandbox.limits import limits_for
from taskyard.worker.sandbox.settings import SandboxSettings


class AttemptSandbox(Sandbox, Protocol):
    """An attempt's sandbox, closed when the attempt ends."""

    def close(self) -> None:
        """Stop whatever is left of its programs and release what it holds."""
        ...


class _Plain(PlainProcesses):
    def close(self) -> None:
        pass


def for_attempt(
    settings: SandboxSettings,
    options: RunOptions,
    work_dir: Path,
    name: str,
    root: Path | None = None,
) -> AttemptSandbox:
    """The sandbox of one attempt (`name` names its limits' cgroup)."""
    if not settings.sandboxed:
        return _Plain(work_dir)
    memory, processes = settings.granted(options)
    limits = limits_for(settings.limiter, name, memory, processes)
    return BwrapSandbox(settings, options, work_dir, limits, root)
