"""Assignments per second with 1k vs 100k pending requests, and with the
100k spread over 1,000 tenants.

Pure matching (no I/O): 100 distinct task-data shapes spread over the pending
queue, 500 workers of 10 metadata kinds each taking the best request it can
run, again and again, the tenants taking turns by fair share as in the
dispatcher. Because verdicts are cached per (shape, metadata) and only the
best request of each shape is looked at, the rate should not depend on how
many requests wait; because the tenants wait in a heap by fair share, it
should hardly depend on how many tenants wait. Targets: ratio
100k / 1k >= 0.8; 1,000 tenants / 1 tenant >= 0.9.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any, ClassVar

from taskyard.scheduler.matching import (
    FairShare,
    PendingEntry,
    PendingIndex,
    Served,
    Shape,
    VerdictCache,
    WorkerView,
    fingerprint,
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


def build(pending: int, tenants: int = 1) -> tuple[PendingIndex, list[WorkerView]]:
    """A queue of `pending` requests over SHAPES shapes (each tenant's over
    all of them), of `tenants` tenants in turn, and the workers."""
    index = PendingIndex()
    tasks = []
    for shape_number in range(SHAPES):
        task = Placed()
        kinds = [(shape_number + k) % KINDS for k in range(3)]  # each shape suits 3 kinds
        task.configure({"kinds": kinds, "shape": shape_number})
        tasks.append((Shape("placed", fingerprint(task.data)), task))
    for number in range(pending):
        shape, task = tasks[(number // tenants) % SHAPES]
        key = f"{number:08d}"
        index.add(PendingEntry.of(key, shape, number % 7, key, f"t{number % tenants}"), task)
    workers = [
        WorkerView.of(f"w{n}", {"placed:version": 1, "system:kind": n % KINDS})
        for n in range(WORKERS)
    ]
    return index, workers


def assignments_per_second(pending: int, assignments: int, tenants: int = 1) -> float:
    """Take `assignments` requests off a queue of `pending`, worker after worker,
    pass after pass (the queue is built before the clock starts)."""
    index, workers = build(pending, tenants)
    verdicts, running = VerdictCache(), Counter[str]()
    fair = FairShare(running.__getitem__, {}, Served())
    for tenant in index.tenants():
        fair.touch(tenant)
    taken = 0
    started = time.perf_counter()
    while taken < assignments:
        for worker in workers:
            entry = fair.pick(worker, index, verdicts)
            if entry is not None:
                index.discard(entry.id)
                running[entry.tenant] += 1
                fair.touch(entry.tenant)
                taken += 1
    return taken / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # Half the small queue: taking more would empty shapes and flatter the small case.
    parser.add_argument("--assignments", type=int, default=500)
    args = parser.parse_args()
    small = max(assignments_per_second(1_000, args.assignments) for _ in range(3))
    large = max(assignments_per_second(100_000, args.assignments) for _ in range(3))
    spread = max(assignments_per_second(100_000, args.assignments, 1_000) for _ in range(3))
    print(f"machine: {machine()}")
    print(f"{SHAPES} shapes, {WORKERS} workers of {KINDS} metadata kinds, "
          f"{args.assignments} assignments")  # fmt: skip
    print(f"{'pending':>10} {'assignments/s':>15}")
    print(f"{1_000:>10,} {small:>15,.0f}")
    print(f"{100_000:>10,} {large:>15,.0f}")
    print(f"ratio 100k / 1k: {large / small:.2f}")
    print(f"{100_000:>10,} {spread:>15,.0f}  of 1,000 tenants (100 each)")
    print(f"ratio 1,000 tenants / 1 tenant: {spread / large:.2f}")


if __name__ == "__main__":
    main()
