"""Finished results survive until acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from taskyard.worker import outbox as outbox_module
from taskyard.worker.outbox import Outbox, Result


async def test_results_stay_until_removed_and_survive_a_restart(tmp_path: Path) -> None:
    first = Result("wr1", 1, "success", '{"n": 1}', details_json='{"exit_code": 0}')
    second = Result("wr2", 3, "error", error={"reason": "task-raised", "type": "E", "message": "m"})
    outbox = Outbox(tmp_path)
    await outbox.put(first)
    await outbox.put(second)
    again = Outbox(tmp_path)  # a restarted worker
    assert again.pending() == [first, second]
    again.remove("wr1", 1)
    again.remove("wr1", 1)  # twice is fine
    assert Outbox(tmp_path).pending() == [second]
    assert not list(tmp_path.glob("*.tmp"))


async def test_results_finishing_together_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(tmp_path)
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    await asyncio.gather(*(outbox.put(Result(f"wr{n}", 1, "success")) for n in range(20)))
    assert len(synced) <= 2  # the first alone, the other 19 together at most
    assert len(Outbox(tmp_path).pending()) == 20


def test_results_of_an_older_worker_are_taken_over(tmp_path: Path) -> None:
    legacy = {"work_request_id": "wr9", "attempt": 2, "outcome": "failure"}
    (tmp_path / "wr9.2.json").write_text(json.dumps(legacy))
    assert Outbox(tmp_path).pending() == [Result("wr9", 2, "failure")]
    assert not list(tmp_path.glob("*.json"))
    assert Outbox(tmp_path).pending() == [Result("wr9", 2, "failure")]


async def test_a_mostly_acknowledged_journal_is_rewritten_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "COMPACT_AFTER", 10)
    outbox = Outbox(tmp_path)
    for n in range(10):
        await outbox.put(Result(f"wr{n}", 1, "success"))
        outbox.remove(f"wr{n}", 1)
    await outbox.put(Result("kept", 1, "success"))
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert len(lines) < 10
    assert Outbox(tmp_path).pending() == [Result("kept", 1, "success")]


async def test_an_acknowledgement_before_the_write_ends_is_kept(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    putting = asyncio.ensure_future(outbox.put(Result("wr1", 1, "success")))
    await asyncio.sleep(0)  # its write has begun, off the event loop
    assert outbox.pending() == [Result("wr1", 1, "success")]  # resent if the link breaks now
    outbox.remove("wr1", 1)  # the scheduler answered before the disk did
    await putting
    assert outbox.pending() == []
    assert Outbox(tmp_path).pending() == []  # its acknowledgement follows its line
