"""Live task logs: what workers send of a running attempt's output, stored
as it arrives, and served to followers as it grows.

A worker's chunks are appended only if they continue the stored log (offsets
are the same on both sides: `taskyard.logframes`); what the scheduler has
already is skipped, so a worker may resend after a reconnection without a
gap or a repeat. Each attempt's log is capped: past the cap, a note says so
and the worker is told to stop sending. A follower reads from an offset and,
following, is woken by each append until the log is sealed (the worker said
it was the last) or its attempt has been over for a few seconds.

With several schedulers on one database, logs live in the shared blob
directory: the scheduler holding the worker's session appends (reading the
log's size afresh, since another may have appended before), and announces
it; the others' followers wake on that announcement (`heard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from cachetools import LRUCache

from taskyard import logframes
from taskyard.errors import invalid
from taskyard.scheduler.blobs.logs import LogFiles
from taskyard.scheduler.domain import FINAL_STATES, Lease
from taskyard.scheduler.service.core import Core

#: Bytes of one attempt's log the scheduler keeps, by default.
DEFAULT_CAP = 64 * 1024 * 1024
#: How long a follower waits for the last output of an attempt that is over
#: (a worker says when it has sent the last of it; one whose task printed
#: nothing says nothing).
END_GRACE = 3.0
SILENT_GRACE = 0.5
#: What a follower reads at a time.
READ_SIZE = 1024 * 1024


@dataclass
class _Log:
    """What the scheduler knows of one attempt's log while it is in use."""

    size: int
    sealed: bool
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Wake the followers waiting now."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class TaskLogs:
    """Appends workers' output and serves it to followers."""

    def __init__(self, core: Core, files: LogFiles, cap: int = DEFAULT_CAP) -> None:
        self._core = core
        self._files = files
        self._cap = cap
        self._logs: LRUCache[Lease, _Log] = LRUCache(maxsize=10_000)
        #: Tells the other schedulers of an append (set when there may be some).
        self.announce: Callable[[str, str], Awaitable[None]] | None = None

    def heard(self, lease: Lease) -> None:
        """Another scheduler appended to the log: read it afresh, wake its followers."""
        log = self._logs.pop(lease, None)
        if log is not None:
            log.touch()

    async def _log(self, lease: Lease) -> _Log:
        found = self._logs.get(lease)
        if found is None:
            id_, attempt = lease.work_request_id, lease.attempt
            size = await asyncio.to_thread(self._files.size, id_, attempt)
            sealed = await asyncio.to_thread(self._files.sealed, id_, attempt)
            found = self._logs.setdefault(lease, _Log(size, sealed))
        return found

    async def _writes(self, worker: str, lease: Lease) -> bool:
        """Whether `worker` holds (or held, for an attempt just ended) the lease."""
        current = self._core.dispatcher.active.get(lease.work_request_id)
        if current is None:  # ended: its tail may still be on its way
            current = await self._core.db.run(lambda tx: tx.get_work_request(lease.work_request_id))
            if current is not None and current.state not in FINAL_STATES:
                current = None
        return current is not None and current.lease == lease and current.worker_name == worker

    async def append(
        self,
        worker: str,
        lease: Lease,
        offset: int,
        chunks: Iterable[tuple[int, bytes]],
        end: bool,
    ) -> tuple[int, bool]:
        """Store a worker's chunks; return the stored size and whether the
        scheduler takes no more of this log."""
        if not await self._writes(worker, lease):
            return 0, True
        if self.announce is not None:  # another scheduler may have appended before
            self._logs.pop(lease, None)
        log = await self._log(lease)
        if log.sealed:
            return log.size, True
        if offset > log.size:
            return log.size, False  # a gap: the worker goes on from what is stored
        records = [logframes.frame(stream, data) for stream, data in chunks]
        fresh = _after(records, log.size - offset)
        if log.size + sum(map(len, fresh)) > self._cap:
            note = f"taskyard: log cut here: it reached its limit of {self._cap} bytes\n"
            fresh, end = [logframes.frame(logframes.TASKYARD, note.encode())], True
        if fresh:
            data = b"".join(fresh)
            id_, attempt = lease.work_request_id, lease.attempt
            log.size = await asyncio.to_thread(self._files.append, id_, attempt, data)
        if end:
            await asyncio.to_thread(self._files.seal, lease.work_request_id, lease.attempt)
            log.sealed = True
        log.touch()
        if self.announce is not None and (fresh or end):
            await self.announce("log", f"{lease.work_request_id} {lease.attempt}")
        return log.size, log.sealed

    def _over(self, lease: Lease) -> bool:
        """Whether the attempt can produce no more output."""
        dispatcher = self._core.dispatcher
        current = dispatcher.active.get(lease.work_request_id) or dispatcher.pending.get(
            lease.work_request_id
        )
        return current is None or current.attempt != lease.attempt

    async def read(
        self, lease: Lease, offset: int, follow: bool
    ) -> AsyncIterator[tuple[int, int, int, bytes]]:
        """`(offset, next offset, stream, data)` of each record from `offset`;
        following, until the log is complete."""
        over_since: float | None = None
        while True:
            log = await self._log(lease)
            changed = log.changed
            if offset < log.size:
                records = await self._records(lease, offset)
                for start, stream, data in records:
                    offset = start + logframes.HEADER.size + len(data)
                    yield start, offset, stream, data
                if records:
                    continue
            if not follow or log.sealed:
                return
            if self._over(lease):
                over_since = over_since or time.monotonic()
                grace = END_GRACE if log.size else SILENT_GRACE
                if time.monotonic() - over_since > grace:
                    return
            with contextlib.suppress(TimeoutError):  # to see the attempt end
                await asyncio.wait_for(changed.wait(), 1.0)

    async def _records(self, lease: Lease, offset: int) -> list[tuple[int, int, bytes]]:
        id_, attempt = lease.work_request_id, lease.attempt
        buffer = await asyncio.to_thread(self._files.read, id_, attempt, offset, READ_SIZE)
        if len(buffer) >= logframes.HEADER.size:
            stream, length = logframes.HEADER.unpack_from(buffer)
            if stream not in logframes.NAMES or length > logframes.MAX_DATA:
                raise invalid("offset", "is not where a chunk starts; use a next_offset")
        return list(logframes.parse(buffer, offset))


def _after(records: list[bytes], skip: int) -> list[bytes]:
    """The records past the first `skip` bytes (those the log has already)."""
    while records and skip >= len(records[0]):
        skip -= len(records.pop(0))
    return records if skip == 0 else []
