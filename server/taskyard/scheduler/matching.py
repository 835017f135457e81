"""Which pending work request a free worker slot takes. Pure and deterministic.

Pending requests are grouped by *shape*: task name plus a hash of the task
data. Requests of one shape are equally suitable for any worker, so a match
looks at the best request of each shape only, and `can_run_on` verdicts are
cached per (shape, fingerprint of the worker's effective metadata). The cost
of a match grows with the number of shapes, not of pending requests, and
workers with identical metadata share verdicts.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskyard.tasks import Task


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys and no spaces: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(value: Any) -> str:
    """A short stable digest of a JSON value."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Shape:
    """What makes two pending requests interchangeable for matching."""

    task_name: str
    data_hash: str


@dataclass(frozen=True, order=True)
class PendingEntry:
    """A pending request as the index sees it; orders best first."""

    sort_key: tuple[int, str]
    id: str = field(compare=False)
    shape: Shape = field(compare=False)

    @classmethod
    def of(cls, id: str, shape: Shape, priority: int, queue_key: str) -> PendingEntry:
        """Higher priority first, then first-in first-out by queue key."""
        return cls((-priority, queue_key), id, shape)


@dataclass(frozen=True)
class WorkerView:
    """What matching needs to know about one worker."""

    name: str
    metadata: Mapping[str, Any]
    allowed_tasks: frozenset[str] = frozenset()
    denied_tasks: frozenset[str] = frozenset()
    metadata_fingerprint: str = ""

    @classmethod
    def of(
        cls,
        name: str,
        metadata: Mapping[str, Any],
        allowed: Iterator[str] | tuple[str, ...] = (),
        denied: Iterator[str] | tuple[str, ...] = (),
    ) -> WorkerView:
        """Build a view, computing the metadata fingerprint once."""
        return cls(
            name, dict(metadata), frozenset(allowed), frozenset(denied), fingerprint(metadata)
        )

    def filters_out(self, task_name: str) -> bool:
        """Whether the operator's allow/deny lists keep this task off the worker."""
        if task_name in self.denied_tasks:
            return True
        return bool(self.allowed_tasks) and task_name not in self.allowed_tasks


class PendingIndex:
    """Pending requests grouped by shape, each group a heap, best first.

    Removal is lazy: a removed id stays in its heap until it reaches the top.
    """

    def __init__(self) -> None:
        self._heaps: dict[Shape, list[PendingEntry]] = {}
        self._tasks: dict[Shape, Task] = {}
        self._live: dict[str, PendingEntry] = {}

    def __len__(self) -> int:
        return len(self._live)

    @property
    def shapes(self) -> int:
        """How many shapes a match looks at (the candidates it considers)."""
        return len(self._heaps)

    def __contains__(self, work_request_id: object) -> bool:
        return work_request_id in self._live

    def add(self, entry: PendingEntry, task: Task) -> None:
        """Add a request; `task` is its task configured with its data."""
        if entry.id in self._live:
            return
        self._live[entry.id] = entry
        heapq.heappush(self._heaps.setdefault(entry.shape, []), entry)
        self._tasks.setdefault(entry.shape, task)

    def discard(self, work_request_id: str) -> PendingEntry | None:
        """Remove a request if it is here; return its entry."""
        return self._live.pop(work_request_id, None)

    def task(self, shape: Shape) -> Task:
        """The configured task of a shape present in the index."""
        return self._tasks[shape]

    def heads(self) -> Iterator[PendingEntry]:
        """Yield the best live entry of every shape."""
        for shape in list(self._heaps):
            heap = self._heaps[shape]
            while heap and self._live.get(heap[0].id) is not heap[0]:
                heapq.heappop(heap)
            if heap:
                yield heap[0]
            else:
                del self._heaps[shape]
                del self._tasks[shape]


class VerdictCache:
    """`can_run_on` verdicts per (shape, worker metadata fingerprint), LRU-bounded."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._verdicts: OrderedDict[tuple[Shape, str], bool] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def can_run(self, shape: Shape, task: Task, worker: WorkerView) -> bool:
        """Whether `worker` can run requests of `shape`, asking the task once."""
        key = (shape, worker.metadata_fingerprint)
        verdict = self._verdicts.get(key)
        if verdict is not None:
            self.hits += 1
            self._verdicts.move_to_end(key)
            return verdict
        self.misses += 1
        verdict = bool(task.can_run_on(dict(worker.metadata)))
        self._verdicts[key] = verdict
        if len(self._verdicts) > self._max_entries:
            self._verdicts.popitem(last=False)
        return verdict


def pick(worker: WorkerView, index: PendingIndex, verdicts: VerdictCache) -> PendingEntry | None:
    """Return the highest-priority, oldest pending request `worker` can run."""
    best: PendingEntry | None = None
    for head in index.heads():
        if best is not None and best < head:
            continue
        if worker.filters_out(head.shape.task_name):
            continue
        if verdicts.can_run(head.shape, index.task(head.shape), worker):
            best = head
    return best
