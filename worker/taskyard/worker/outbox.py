"""Finished results waiting for the scheduler's acknowledgement, kept on disk.

A result is written (atomically) before it is sent and removed only once the
scheduler acknowledges it, so neither a lost connection nor a worker restart
loses a finished result.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    """A finished attempt, as reported to the scheduler."""

    work_request_id: str
    attempt: int
    outcome: str
    output_json: str = ""
    error: dict[str, str] | None = None
    details_json: str = ""


class Outbox:
    """Results on disk under `directory`, one JSON file each."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, work_request_id: str, attempt: int) -> Path:
        return self._directory / f"{work_request_id}.{attempt}.json"

    def put(self, result: Result) -> None:
        """Keep `result` until it is acknowledged (written atomically, fsynced)."""
        path = self._path(result.work_request_id, result.attempt)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(asdict(result), file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)

    def remove(self, work_request_id: str, attempt: int) -> None:
        """Forget an acknowledged (or refused) result."""
        self._path(work_request_id, attempt).unlink(missing_ok=True)

    def pending(self) -> list[Result]:
        """Every result not yet acknowledged, oldest first."""
        results = []
        for path in sorted(self._directory.glob("*.json"), key=lambda p: p.stat().st_mtime):
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            results.append(Result(**data))
        return results
