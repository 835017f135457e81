"""Retention: what is finished and old goes, so a farm's disk does not only grow.

Completed and aborted requests that ended more than the kept age ago are
deleted with their artifacts and logs, artifacts past their `expires_at`
too, and then the stored contents no artifact refers to any more. Nothing
pending, assigned or running is ever touched. The scheduler prunes by
itself every hour (`--keep-days`, 30 by default; 0 keeps everything), and
`taskyard prune --older-than` prunes on demand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from taskyard.scheduler.blobs.logs import LogFiles
from taskyard.scheduler.blobs.port import BlobStore
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.dispatch import Guard
from taskyard.scheduler.store.port import StoreTransaction

BATCH = 500
#: A blob stored (or found again) this recently is never collected: an
#: artifact being declared may be about to refer to it.
BLOB_GRACE = 3600.0


@dataclass(frozen=True)
class Pruned:
    """What one pass deleted."""

    work_requests: int = 0
    artifacts: int = 0
    blobs: int = 0


class Retention:
    """Deletes what is finished and older than an age."""

    def __init__(self, core: Core, blobs: BlobStore, logs: LogFiles) -> None:
        self._core = core
        self._blobs = blobs
        self._logs = logs

    async def prune(self, older_than: float, guard: Guard | None = None) -> Pruned:
        """Delete what ended more than `older_than` seconds ago (each delete
        refused by `guard`, maintenance's lease, when it has gone)."""
        now = self._core.clock()
        cutoff = now - timedelta(seconds=older_than)
        requests = artifacts = 0
        while ids := await self._core.db.run(lambda tx: tx.finished_before(cutoff, BATCH)):
            artifacts += await self._core.db.run(partial(_delete, ids=ids, guard=guard))
            requests += len(ids)
            for work_request_id in ids:
                await asyncio.to_thread(self._logs.remove, work_request_id)
        while expired := await self._core.db.run(lambda tx: tx.expired_artifacts(now, BATCH)):
            await self._core.db.run(partial(_delete_artifacts, ids=expired, guard=guard))
            artifacts += len(expired)
        return Pruned(requests, artifacts, await self._collect())

    async def _collect(self) -> int:
        """Remove stored contents no artifact refers to."""
        removed = 0
        candidates = await asyncio.to_thread(
            lambda: list(self._blobs.stored_older_than(BLOB_GRACE))
        )
        for start in range(0, len(candidates), BATCH):
            chunk = candidates[start : start + BATCH]
            kept = await self._core.db.run(partial(_referenced, blobs=chunk))
            for sha256, size in set(chunk) - kept:
                await asyncio.to_thread(self._blobs.remove, sha256, size)
                removed += 1
        return removed


def _delete(tx: StoreTransaction, ids: list[str], guard: Guard | None) -> int:
    artifact_ids = tx.artifacts_of(ids)
    _delete_artifacts(tx, artifact_ids, guard)
    tx.delete_work_requests(ids)
    return len(artifact_ids)


def _delete_artifacts(tx: StoreTransaction, ids: list[str], guard: Guard | None) -> None:
    if guard is not None:
        guard(tx)
    for artifact_id in ids:
        tx.delete_artifact(artifact_id)


def _referenced(tx: StoreTransaction, blobs: list[tuple[str, int]]) -> set[tuple[str, int]]:
    return tx.referenced_blobs(blobs)
