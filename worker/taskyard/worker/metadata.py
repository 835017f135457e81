"""What a worker tells the scheduler about itself."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from taskyard.tasks import Task

#: Kernel machine names to Debian architecture names.
DEBIAN_ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "i686": "i386",
    "i386": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64el",
    "loongarch64": "loong64",
}


def taskyard_version() -> str:
    """The installed Taskyard version."""
    try:
        return version("taskyard")
    except PackageNotFoundError:
        return "unknown"


def total_memory() -> int:
    """Total memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def system_facts(slots: int) -> dict[str, Any]:
    """Facts about the machine, under the `system:` prefix."""
    machine = platform.machine()
    return {
        "system:cpu_count": os.cpu_count() or 1,
        "system:total_memory": total_memory(),
        "system:architecture": machine,
        "system:debian_architecture": DEBIAN_ARCHITECTURES.get(machine, machine),
        "system:os": platform.system().lower(),
        "system:python_version": platform.python_version(),
        "system:taskyard_version": taskyard_version(),
        "system:slots": slots,
    }


def worker_metadata(slots: int, sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every task's `analyze_worker()` metadata plus the system facts and
    what its sandbox offers (`sandbox:` keys)."""
    return {**Task.analyze_worker_all_tasks(), **system_facts(slots), **(sandbox or {})}
