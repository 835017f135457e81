"""What of the host a sandboxed program sees: its system directories, read-only,
without what other users may not read there."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: The host's system directories, shown read-only (symbolic links, as on a
#: merged-/usr system, stay links).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Where secrets may sit among them (shadow passwords, host keys, private TLS keys).
SCANNED = ("/etc",)


def system_view() -> list[str]:
    """bubblewrap arguments showing the host's system directories read-only."""
    arguments: list[str] = []
    for directory in SYSTEM_DIRS:
        path = Path(directory)
        if path.is_symlink():
            arguments += ["--symlink", os.readlink(path), directory]
        elif path.is_dir():
            arguments += ["--ro-bind", directory, directory]
    return arguments


#: What of /proc a program must not read even read-only (Docker's masked paths).
MASKED_PROC = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
               "/proc/latency_stats", "/proc/acpi", "/proc/scsi", "/proc/asound")  # fmt: skip


def masking_proc() -> list[str]:
    """bubblewrap arguments masking MASKED_PROC in a sandbox's new /proc
    (those this kernel has)."""
    return hiding(path for path in MASKED_PROC if os.path.lexists(path))


def hidden_paths(also: Iterable[Path] = ()) -> tuple[str, ...]:
    """Entries under SCANNED that other users may not read (or, for a
    directory, enter), and those of `also` that lie in a system directory:
    a task sees them empty."""
    found = [str(path) for directory in SCANNED for path in _private(Path(directory))]
    for path in also:
        resolved = path.resolve()
        if any(resolved.is_relative_to(d) for d in SYSTEM_DIRS if Path(d).is_dir()):
            found.append(str(resolved))
    return tuple(sorted(set(found)))


def _private(top: Path) -> list[Path]:
    """What under `top` is closed to other users, not looking inside what is."""
    found = []
    for root, directories, files in os.walk(top):
        for name in list(directories):
            mode = (Path(root) / name).lstat().st_mode
            if not (mode & stat.S_IROTH and mode & stat.S_IXOTH):
                found.append(Path(root) / name)
                directories.remove(name)
        for name in files:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if not stat.S_ISLNK(mode) and not mode & stat.S_IROTH:
                found.append(path)
    return found


def hiding(paths: Iterable[str]) -> list[str]:
    """bubblewrap arguments covering each path: an empty directory over a
    directory, /dev/null (unreadable there: no devices) over anything else."""
    arguments: list[str] = []
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            arguments += ["--tmpfs", path]
        elif os.path.lexists(path):
            arguments += ["--ro-bind", "/dev/null", path]
    return arguments
