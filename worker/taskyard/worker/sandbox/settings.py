"""How a worker runs its tasks' programs: decided once at start, handed to
each executor process as JSON, and reported to the scheduler as metadata."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from taskyard.tasks import run_options
from taskyard.tasks.run_options import RunOptions

#: `--executor`: each program in its own namespaces, or as a plain process.
SANDBOX, PROCESS = "sandbox", "process"

#: The PATH programs get in the sandbox (the host's system directories).
TASK_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
#: The only variables a sandboxed program gets, beside its task data's `env`.
ENVIRONMENT_ALLOWLIST = ("PATH", "HOME", "LANG", "TMPDIR")
#: Where the attempt's working directory is, inside the sandbox.
WORK_DIR = "/work"


@dataclass(frozen=True)
class SandboxSettings:
    """Every executor's view of the sandbox."""

    executor: str = SANDBOX
    #: The bubblewrap program.
    bwrap: str = "bwrap"
    #: Whether tasks that ask for the network may have it (--allow-network).
    network: bool = False
    #: A task's memory limit when it sets none, and the most it may ask for.
    memory_mb: int = 0
    #: The same for processes (and threads).
    processes: int = 0
    #: How limits are enforced: {"kind": "cgroup2" | "cgroup1" | "rlimit", ...}.
    limiter: dict[str, Any] = field(default_factory=lambda: {"kind": "rlimit"})
    #: Host paths inside the system directories that a task must not see
    #: (what other users may not read in /etc, the worker's data dir).
    hidden: tuple[str, ...] = ()
    lang: str = "C.UTF-8"

    @property
    def sandboxed(self) -> bool:
        return self.executor == SANDBOX

    def granted(self, options: RunOptions) -> tuple[int, int]:
        """The memory (MB) and processes a task gets: what it asks, at most
        the worker's, the worker's when it asks nothing."""
        memory = min(options.memory_mb or self.memory_mb, self.memory_mb)
        processes = min(options.processes or self.processes, self.processes)
        return memory, processes

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SandboxSettings:
        values = json.loads(text)
        values["hidden"] = tuple(values.get("hidden", ()))
        return cls(**values)

    def metadata(self) -> dict[str, Any]:
        """What the scheduler matches on (`taskyard.tasks.run_options`)."""
        if not self.sandboxed:  # the host's network, no limits, no environments
            return {
                run_options.ISOLATION: "none",
                run_options.NETWORK: True,
                run_options.ENVIRONMENTS: False,
                run_options.MAX_MEMORY_MB: None,
                run_options.MAX_PROCESSES: None,
            }
        return {
            run_options.ISOLATION: "namespaces",
            run_options.NETWORK: self.network,
            run_options.ENVIRONMENTS: True,
            run_options.MAX_MEMORY_MB: self.memory_mb,
            run_options.MAX_PROCESSES: self.processes,
        }
