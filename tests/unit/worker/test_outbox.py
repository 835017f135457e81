"""Finished results survive until acknowledged."""

from __future__ import annotations

from pathlib import Path

from taskyard.worker.outbox import Outbox, Result


def test_results_stay_until_removed_and_survive_a_restart(tmp_path: Path) -> None:
    first = Result("wr1", 1, "success", '{"n": 1}')
    second = Result("wr2", 3, "error", error={"reason": "task-raised", "type": "E", "message": "m"})
    outbox = Outbox(tmp_path)
    outbox.put(first)
    outbox.put(second)
    again = Outbox(tmp_path)  # a restarted worker
    assert again.pending() == [first, second]
    again.remove("wr1", 1)
    again.remove("wr1", 1)  # twice is fine
    assert Outbox(tmp_path).pending() == [second]
    assert not list(tmp_path.glob("*.tmp"))
