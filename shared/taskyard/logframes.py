"""A task's output as framed records: the one format of live logs.

The executor's output, the worker's spool on disk and the scheduler's stored
log are the same sequence of records: a 5-byte header (the stream, then the
data's length, big-endian) and the data. Offsets count those bytes, so the
worker, the scheduler and a follower agree on where anything is, and a
transfer resumes at an offset without a gap or a repeat. The stream numbers
are `taskyard.v1.LogStream`'s.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

HEADER = struct.Struct(">BI")
#: Largest data of one record.
MAX_DATA = 64 * 1024

STDOUT, STDERR, LOG, TASKYARD = 1, 2, 3, 4
STREAMS = {"stdout": STDOUT, "stderr": STDERR, "log": LOG, "taskyard": TASKYARD}
NAMES = {number: name for name, number in STREAMS.items()}


def frame(stream: int, data: bytes) -> bytes:
    """One record."""
    return HEADER.pack(stream, len(data)) + data


def frames(stream: int, data: bytes) -> Iterator[bytes]:
    """`data` as records of at most MAX_DATA bytes."""
    for start in range(0, len(data), MAX_DATA):
        yield frame(stream, data[start : start + MAX_DATA])


def parse(buffer: bytes, offset: int) -> Iterator[tuple[int, int, bytes]]:
    """The complete records in `buffer`, read from file offset `offset`:
    `(offset, stream, data)` each; an incomplete last record is left out."""
    position = 0
    while position + HEADER.size <= len(buffer):
        stream, length = HEADER.unpack_from(buffer, position)
        end = position + HEADER.size + length
        if end > len(buffer):
            return
        yield offset + position, stream, buffer[position + HEADER.size : end]
        position = end
