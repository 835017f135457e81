"""Tasks' live output, from their executors to the scheduler.

Each attempt's output is spooled to disk as it arrives, framed exactly as
the scheduler stores it (`taskyard.logframes`), so memory stays bounded
whatever a task prints and while the scheduler is away (up to a cap per
attempt, past which the spool says what was cut). The pump sends from the
offset the scheduler last acknowledged, at most a window ahead of it: the
scheduler's acknowledgements are the back-pressure. After a reconnection it
starts again from the acknowledged offset; the scheduler skips what it has,
so nothing is lost or repeated. Once an attempt has ended and all of its
output is sent, the pump says so (`end`), and the spool goes once the
scheduler has it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskyard import logframes
from taskyard.v1 import common_pb2, workers_pb2

log = logging.getLogger(__name__)

#: Bytes sent and not yet acknowledged, per attempt.
WINDOW = 4 * 1024 * 1024
#: Records in one message.
BATCH = 64
#: What one attempt may spool on this machine.
SPOOL_CAP = 256 * 1024 * 1024

Lease = tuple[str, int]
Send = Callable[..., None]


@dataclass
class Spool:
    """One attempt's output on disk and how far it got."""

    path: Path
    size: int = 0
    sent: int = 0
    acked: int = 0
    ended: bool = False
    closed: bool = False
    cut: bool = False
    end_sent: bool = False
    #: Where each message sent and not yet acknowledged ends, in order.
    in_flight: deque[int] = field(default_factory=deque)

    def append(self, stream: int, data: bytes) -> None:
        if self.cut:
            return
        records = list(logframes.frames(stream, data))
        length = sum(map(len, records))
        if self.size + length > SPOOL_CAP:
            note = f"taskyard: output cut here: more than {SPOOL_CAP} bytes while unsent\n"
            records = [logframes.frame(logframes.TASKYARD, note.encode())]
            length = len(records[0])
            self.cut = True
        with open(self.path, "ab") as file:
            file.writelines(records)
        self.size += length

    def read(self, limit: int) -> tuple[int, list[tuple[int, bytes]]]:
        """Up to `limit` bytes of whole records from `sent`: their offset and
        (stream, data) each."""
        with open(self.path, "rb") as file:
            file.seek(self.sent)
            buffer = file.read(min(limit, self.size - self.sent))
        records = [(s, d) for _, s, d in logframes.parse(buffer, self.sent)][:BATCH]
        return self.sent, records

    @property
    def done(self) -> bool:
        """Everything the scheduler will take of it, it has."""
        return self.closed or (self.ended and self.end_sent and self.acked >= self.size)


class OutputPump:
    """Spools each running attempt's output and sends it over the session."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        for stale in directory.glob("*.log") if directory.exists() else ():
            stale.unlink()  # attempts of an earlier run: their tasks died with it
        directory.mkdir(parents=True, exist_ok=True)
        self._spools: dict[Lease, Spool] = {}
        self._wake = asyncio.Event()
        self._send: Send | None = None

    def output(self, lease: Lease, stream: str, data: bytes) -> None:
        """A chunk of output from a running attempt."""
        spool = self._spools.get(lease)
        if spool is None:
            path = self._directory / f"{lease[0]}.{lease[1]}.log"
            spool = self._spools[lease] = Spool(path)
        spool.append(logframes.STREAMS.get(stream, logframes.LOG), data)
        self._wake.set()

    def ended(self, lease: Lease) -> None:
        """The attempt ended: once its output is out, say so. A task that
        printed nothing costs nothing here (its recorded result ends a
        follower's wait)."""
        spool = self._spools.get(lease)
        if spool is None:
            return
        spool.ended = True
        self._wake.set()

    def connected(self, send: Send | None) -> None:
        """A session opened (`send` puts a message on it), or closed (None):
        start again from what the scheduler acknowledged."""
        self._send = send
        for spool in self._spools.values():
            spool.sent, spool.end_sent = spool.acked, False
            spool.in_flight.clear()
        self._wake.set()

    def acknowledged(self, ack: workers_pb2.OutputAck) -> None:
        lease = (ack.lease.work_request_id, ack.lease.attempt)
        spool = self._spools.get(lease)
        if spool is None:
            return
        committed = ack.committed
        if ack.closed:
            spool.closed = True
        elif committed in spool.in_flight:  # the answer to a message sent: all is well
            while spool.in_flight and spool.in_flight[0] <= committed:
                spool.in_flight.popleft()
        elif committed <= spool.size:  # it has less (a gap) or more than that: go on from there
            spool.sent, spool.end_sent = committed, False
            spool.in_flight.clear()
        spool.acked = committed
        if spool.done:
            self._forget(lease)
        self._wake.set()

    def _forget(self, lease: Lease) -> None:
        spool = self._spools.pop(lease)
        with contextlib.suppress(FileNotFoundError):
            spool.path.unlink()

    async def run(self) -> None:
        """Send what can be sent, whenever something changes."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._send is not None:
                for lease, spool in list(self._spools.items()):
                    self._pump(lease, spool, self._send)

    def _pump(self, lease: Lease, spool: Spool, send: Send) -> None:
        while not spool.closed and spool.sent < spool.size:
            room = WINDOW - (spool.sent - spool.acked)
            if room <= 0:
                return
            limit = max(min(room, 1024 * 1024), logframes.HEADER.size + logframes.MAX_DATA)
            offset, records = spool.read(limit)
            if not records:
                return
            send(output=_message(lease, offset, records))
            spool.sent += sum(logframes.HEADER.size + len(d) for _, d in records)
            spool.in_flight.append(spool.sent)
        if spool.ended and not spool.end_sent and not spool.closed:
            send(output=_message(lease, spool.sent, [], end=True))
            spool.in_flight.append(spool.sent)
            spool.end_sent = True


def _message(
    lease: Lease, offset: int, records: list[tuple[int, bytes]], end: bool = False
) -> workers_pb2.TaskOutput:
    chunks: list[Any] = [workers_pb2.OutputChunk(stream=s, data=d) for s, d in records]  # type: ignore[arg-type]
    return workers_pb2.TaskOutput(
        lease=common_pb2.Lease(work_request_id=lease[0], attempt=lease[1]),
        offset=offset,
        chunks=chunks,
        end=end,
    )
