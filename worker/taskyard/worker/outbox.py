"""Finished results waiting for the scheduler's acknowledgement, kept on disk.

A result is written (and fsynced) as it is sent, and forgotten only once the
scheduler acknowledges it, so neither a lost connection nor a worker restart
loses a finished result. The send does not wait for the write: the scheduler
acknowledges only what it has committed, and a worker that dies before its
write ends is where it would be had it died a moment earlier (the lease runs
out and the request runs again), so waiting would only add an fsync to every
task's latency. An acknowledgement that comes before the write ends is kept
and applied once it has. The outbox is one append-only journal: results that
finish together share one write and one fsync, made off the event loop; an
acknowledgement is a line needing no fsync (a lost one only means a resend,
which the scheduler accepts again). The journal is rewritten small once most
of it is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

JOURNAL = "outbox.jsonl"
#: Lines past which a mostly acknowledged journal is rewritten.
COMPACT_AFTER = 2000


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
    """Results in a journal under `directory`."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._path = directory / JOURNAL
        directory.mkdir(parents=True, exist_ok=True)
        self._pending: dict[tuple[str, int], Result] = {}
        self._lines = 0
        self._load()
        self._waiting: list[tuple[Result, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        #: Results put and not yet written, and those of them acknowledged.
        self._writing: set[tuple[str, int]] = set()
        self._acknowledged_early: set[tuple[str, int]] = set()

    def _load(self) -> None:
        if self._path.exists():
            for line in self._path.read_text(encoding="utf-8").splitlines():
                self._lines += 1
                with_result: dict[str, Any] = json.loads(line) if line.strip() else {}
                if "put" in with_result:
                    result = Result(**with_result["put"])
                    self._pending[(result.work_request_id, result.attempt)] = result
                elif "ack" in with_result:
                    work_request_id, attempt = with_result["ack"]
                    self._pending.pop((work_request_id, attempt), None)
        for legacy in sorted(self._directory.glob("*.json")):  # one file a result, before
            result = Result(**json.loads(legacy.read_text(encoding="utf-8")))
            self._pending[(result.work_request_id, result.attempt)] = result
        if self._lines or self._pending:
            self._rewrite()
        for legacy in self._directory.glob("*.json"):
            legacy.unlink()

    async def put(self, result: Result) -> None:
        """Keep `result` until it is acknowledged: on disk when this returns.
        Results put meanwhile are written with it, in one fsync."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (result.work_request_id, result.attempt)
        self._pending[key] = result  # resent after a reconnect even while written
        self._writing.add(key)
        self._waiting.append((result, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await asyncio.to_thread(self._append, [r for r, _ in batch], True)
                except OSError as error:
                    for result, future in batch:
                        self._written(result)
                        future.set_exception(error)
                    continue
                for result, future in batch:
                    self._written(result)
                    future.set_result(None)
        finally:
            self._flushing = None

    def _written(self, result: Result) -> None:
        """Its put line is in the journal: its acknowledgement may follow."""
        key = (result.work_request_id, result.attempt)
        self._writing.discard(key)
        if key in self._acknowledged_early:
            self._acknowledged_early.discard(key)
            self._append_acknowledgement(key)

    def _append(self, results: list[Result], durable: bool) -> None:
        lines = "".join(json.dumps({"put": asdict(r)}) + "\n" for r in results)
        with open(self._path, "a", encoding="utf-8") as journal:
            journal.write(lines)
            journal.flush()
            if durable:
                os.fsync(journal.fileno())
        self._lines += len(results)

    def remove(self, work_request_id: str, attempt: int) -> None:
        """Forget an acknowledged (or refused) result (once it is written,
        if it is being written)."""
        key = (work_request_id, attempt)
        if self._pending.pop(key, None) is None:
            return
        if key in self._writing:
            self._acknowledged_early.add(key)
        else:
            self._append_acknowledgement(key)

    def _append_acknowledgement(self, key: tuple[str, int]) -> None:
        with open(self._path, "a", encoding="utf-8") as journal:
            journal.write(json.dumps({"ack": list(key)}) + "\n")
        self._lines += 1
        if self._lines > COMPACT_AFTER and len(self._pending) * 4 < self._lines:
            self._rewrite()

    def _rewrite(self) -> None:
        """The journal with only the pending results, replaced atomically."""
        temporary = self._path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as journal:
            for result in self._pending.values():
                journal.write(json.dumps({"put": asdict(result)}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        temporary.replace(self._path)
        self._lines = len(self._pending)

    def pending(self) -> list[Result]:
        """Every result not yet acknowledged, oldest first."""
        return list(self._pending.values())
