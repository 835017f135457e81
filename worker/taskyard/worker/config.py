"""Settings of `taskyard worker`."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    """Where the worker keeps its token and undelivered results by default."""
    return Path.home() / ".local" / "share" / "taskyard-worker"


@dataclass(frozen=True)
class WorkerConfig:
    """Every setting of the worker process, with its default."""

    scheduler: str = "127.0.0.1:50051"
    name: str = field(default_factory=socket.gethostname)
    data_dir: Path = field(default_factory=default_data_dir)
    slots: int = 1
    #: Assignments held beyond the slots, each started as a slot frees (the
    #: scheduler fills them only when no free slot can take the work).
    prefetch: int = 0
    tls_ca: str = ""
    activation_token_file: str = ""
    #: Programs the `command` task may run.
    allowed_commands: list[str] = field(default_factory=list)
    #: Seconds running tasks may take to finish on SIGTERM before they are aborted.
    drain_timeout: float = 60.0
    #: Seconds an aborted task gets before its processes are stopped.
    abort_grace: float = 10.0
    #: Longest wait between reconnection attempts after transient trouble.
    max_backoff: float = 2.0
    #: How tasks' programs run: "sandbox" (their own namespaces) or "process".
    executor: str = "sandbox"
    #: Whether tasks that ask for the network (`"network": true`) may have it.
    allow_network: bool = False
    #: A task's memory limit in MB when it sets none, and the most it may ask
    #: for (0: the machine's memory divided among the slots).
    task_memory_mb: int = 0
    #: The same for processes and threads (0: 1024).
    task_processes: int = 0
    #: Bytes of unpacked environments kept for later tasks.
    environment_cache_mb: int = 4096
