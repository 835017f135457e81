"""Sortable ids."""

from __future__ import annotations

from taskyard.scheduler.service.ids import SortableIds


def test_ids_strictly_increase_even_when_the_clock_stands_still_or_steps_back() -> None:
    times = iter([1000, 1000, 1000, 999, 1001])
    ids = SortableIds("wr_", clock_ms=lambda: next(times))
    made = [ids() for _ in range(5)]
    assert made == sorted(made)
    assert len(set(made)) == 5
    assert all(i.startswith("wr_") and len(i) == 3 + 24 for i in made)
