"""Task logs on the local filesystem: `logs/<work request>/<attempt>.log`.

Each file holds one attempt's output as framed records (`taskyard.logframes`);
`<attempt>.end` marks a log that will get nothing more. Methods block: the
service calls them off the event loop.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


class LogFiles:
    """The scheduler's stored task logs, under `root`."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, work_request_id: str, attempt: int, suffix: str = ".log") -> Path:
        if not _ID.fullmatch(work_request_id):  # ids are the scheduler's own: never a path
            raise ValueError(f"not a work request id: {work_request_id!r}")
        return self._root / work_request_id / f"{attempt}{suffix}"

    def size(self, work_request_id: str, attempt: int) -> int:
        """Bytes stored of the attempt's log (0 if none)."""
        try:
            return self._path(work_request_id, attempt).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, work_request_id: str, attempt: int, data: bytes) -> int:
        """Add whole records at the end; return the new size."""
        path = self._path(work_request_id, attempt)
        path.parent.mkdir(exist_ok=True)
        with open(path, "ab") as file:
            file.write(data)
            return file.tell()

    def read(self, work_request_id: str, attempt: int, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes from `offset`."""
        try:
            with open(self._path(work_request_id, attempt), "rb") as file:
                file.seek(offset)
                return file.read(limit)
        except FileNotFoundError:
            return b""

    def seal(self, work_request_id: str, attempt: int) -> None:
        """Mark the log complete."""
        path = self._path(work_request_id, attempt, ".end")
        path.parent.mkdir(exist_ok=True)
        path.touch()

    def sealed(self, work_request_id: str, attempt: int) -> bool:
        """Whether the log is complete."""
        return self._path(work_request_id, attempt, ".end").exists()

    def remove(self, work_request_id: str) -> None:
        """Forget every log of a work request."""
        shutil.rmtree(self._root / work_request_id, ignore_errors=True)
