"""Assignments per second with 1k vs 100k pending requests.

Pure matching (no I/O): 100 distinct task-data shapes spread over the pending
queue, 500 workers of 10 metadata kinds each taking the best request it can
run, again and again. Because verdicts are cached per (shape, metadata) and
only the best request of each shape is looked at, the rate should not depend
on how many requests wait. Target: ratio 100k / 1k >= 0.8.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, ClassVar

from taskyard.scheduler.matching import (
    PendingEntry,
    PendingIndex,
    Shape,
    VerdictCache,
    WorkerView,
    fingerprint,
    pick,
)
from taskyard.tasks import Task

from support import machine

KINDS = 10
SHAPES = 100
WORKERS = 500


class Placed(Task):
    """Runs where the worker's `system:kind` is one the data allows."""

    TASK_VERSION = 1
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {"type": "object"}

    def can_run_on(self, worker_metadata: dict[str, Any]) -> bool:
        if not super().can_run_on(worker_metadata):
            return False
        assert self.data is not None
        return worker_metadata.get("system:kind") in self.data["kinds"]

    def _execute(self) -> bool:
        return True


def build(pending: int) -> tuple[PendingIndex, list[WorkerView]]:
    """A queue of `pending` requests over SHAPES shapes, and the workers."""
    index = PendingIndex()
    tasks = []
    for shape_number in range(SHAPES):
        task = Placed()
        kinds = [(shape_number + k) % KINDS for k in range(3)]  # each shape suits 3 kinds
        task.configure({"kinds": kinds, "shape": shape_number})
        tasks.append((Shape("placed", fingerprint(task.data)), task))
    for number in range(pending):
        shape, task = tasks[number % SHAPES]
        key = f"{number:08d}"
        index.add(PendingEntry.of(key, shape, number % 7, key), task)
    workers = [
        WorkerView.of(f"w{n}", {"placed:version": 1, "system:kind": n % KINDS})
        for n in range(WORKERS)
    ]
    return index, workers


def assignments_per_second(pending: int, assignments: int) -> float:
    """Take `assignments` requests off a queue of `pending`, worker after worker
    (the queue is built before the clock starts)."""
    index, workers = build(pending)
    verdicts = VerdictCache()
    taken = 0
    started = time.perf_counter()
    while taken < assignments:
        for worker in workers:
            entry = pick(worker, index, verdicts)
            if entry is not None:
                index.discard(entry.id)
                taken += 1
    return taken / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # Half the small queue: taking more would empty shapes and flatter the small case.
    parser.add_argument("--assignments", type=int, default=500)
    args = parser.parse_args()
    small = max(assignments_per_second(1_000, args.assignments) for _ in range(3))
    large = max(assignments_per_second(100_000, args.assignments) for _ in range(3))
    print(f"machine: {machine()}")
    print(f"{SHAPES} shapes, {WORKERS} workers of {KINDS} metadata kinds, "
          f"{args.assignments} assignments")  # fmt: skip
    print(f"{'pending':>10} {'assignments/s':>15}")
    print(f"{1_000:>10,} {small:>15,.0f}")
    print(f"{100_000:>10,} {large:>15,.0f}")
    print(f"ratio 100k / 1k: {large / small:.2f}")


if __name__ == "__main__":
    main()
