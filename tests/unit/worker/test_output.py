"""The worker's output pump: a window of unacknowledged output, answers that
lag behind it, and a scheduler that has less (or more) than was sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from taskyard import logframes
from taskyard.v1 import common_pb2, workers_pb2
from taskyard.worker import output
from taskyard.worker.output import OutputPump

LEASE = ("wr1", 1)


class Wire:
    """What the pump sent."""

    def __init__(self) -> None:
        self.messages: list[workers_pb2.TaskOutput] = []

    def send(self, **message: Any) -> None:
        self.messages.append(message["output"])


def ack(committed: int, closed: bool = False) -> workers_pb2.OutputAck:
    lease = common_pb2.Lease(work_request_id=LEASE[0], attempt=LEASE[1])
    return workers_pb2.OutputAck(lease=lease, committed=committed, closed=closed)


async def settle(pump: OutputPump) -> None:
    runner = asyncio.create_task(pump.run())
    await asyncio.sleep(0.05)
    runner.cancel()


async def test_lagging_answers_never_resend_and_the_window_holds(tmp_path: Path) -> None:
    wire = Wire()
    pump = OutputPump(tmp_path)
    pump.connected(wire.send)
    chunk = b"x" * logframes.MAX_DATA
    for _ in range(200):  # 13 MiB
        pump.output(LEASE, "stdout", chunk)
    await settle(pump)
    sent = sum(len(c.data) + logframes.HEADER.size for m in wire.messages for c in m.chunks)
    assert sent <= output.WINDOW + 64 * (logframes.HEADER.size + logframes.MAX_DATA)
    ends = []
    position = 0
    for message in wire.messages:
        position = message.offset + sum(len(c.data) + logframes.HEADER.size for c in message.chunks)
        ends.append(position)
    before = len(wire.messages)
    pump.acknowledged(ack(ends[0]))  # the answer to the first message only
    await settle(pump)
    resent = [m.offset for m in wire.messages[before:]]
    assert all(offset >= ends[-1] for offset in resent)  # nothing sent twice


async def test_a_gap_rewinds_to_what_the_scheduler_has(tmp_path: Path) -> None:
    wire = Wire()
    pump = OutputPump(tmp_path)
    pump.connected(wire.send)
    pump.output(LEASE, "stdout", b"one\n")
    pump.output(LEASE, "stdout", b"two\n")
    await settle(pump)
    pump.acknowledged(ack(0))  # it has nothing (it restarted): everything again
    await settle(pump)
    assert wire.messages[-1].offset == 0
    assert [c.data for c in wire.messages[-1].chunks] == [b"one\n", b"two\n"]


async def test_closed_stops_and_the_end_is_said_once(tmp_path: Path) -> None:
    wire = Wire()
    pump = OutputPump(tmp_path)
    pump.connected(wire.send)
    pump.output(LEASE, "stdout", b"all\n")
    pump.ended(LEASE)
    await settle(pump)
    assert [m.end for m in wire.messages] == [False, True]
    pump.acknowledged(ack(wire.messages[-1].offset))
    assert list(tmp_path.glob("*.log")) == []  # all of it is there: the spool goes
