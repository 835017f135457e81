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
from collections.abc import Callable, Iterator, Mapping
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
    tenant: str = field(default="", compare=False)

    @classmethod
    def of(
        cls, id: str, shape: Shape, priority: int, queue_key: str, tenant: str = ""
    ) -> PendingEntry:
        """Higher priority first, then first-in first-out by queue key."""
        return cls((-priority, queue_key), id, shape, tenant)


@dataclass(frozen=True)
class WorkerView:
    """What matching needs to know about one worker."""

    name: str
    metadata: Mapping[str, Any]
    allowed_tasks: frozenset[str] = frozenset()
    denied_tasks: frozenset[str] = frozenset()
    metadata_fingerprint: str = ""
    #: The tenants an operator reserved it for; empty: every tenant.
    tenants: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        name: str,
        metadata: Mapping[str, Any],
        allowed: Iterator[str] | tuple[str, ...] = (),
        denied: Iterator[str] | tuple[str, ...] = (),
        tenants: Iterator[str] | tuple[str, ...] = (),
    ) -> WorkerView:
        """Build a view, computing the metadata fingerprint once."""
        return cls(
            name,
            dict(metadata),
            frozenset(allowed),
            frozenset(denied),
            fingerprint(metadata),
            frozenset(tenants),
        )

    def filters_out(self, task_name: str) -> bool:
        """Whether the operator's allow/deny lists keep this task off the worker."""
        if task_name in self.denied_tasks:
            return True
        return bool(self.allowed_tasks) and task_name not in self.allowed_tasks

    def serves(self, tenant: str) -> bool:
        """Whether the worker takes work of `tenant` (it is not reserved for others)."""
        return not self.tenants or tenant in self.tenants


class _Queue:
    """One tenant's pending requests, grouped by shape, each group a heap;
    and the heads of the groups in a heap of their own (`order`), so that
    the best a worker can run is found by looking at the best heads first."""

    def __init__(self) -> None:
        self.heaps: dict[Shape, list[PendingEntry]] = {}
        self.tasks: dict[Shape, Task] = {}
        #: Every group's head (a removed or overtaken one is replaced when it
        #: comes up), best first; `ordered` holds their ids, each once.
        self.order: list[PendingEntry] = []
        self.ordered: set[str] = set()

    def offer(self, head: PendingEntry) -> None:
        """Put a group's head in `order`, unless it is there already."""
        if head.id not in self.ordered:
            self.ordered.add(head.id)
            heapq.heappush(self.order, head)

    def take(self) -> PendingEntry:
        """The best of `order`, out of it."""
        head = heapq.heappop(self.order)
        self.ordered.discard(head.id)
        return head


class PendingIndex:
    """Pending requests by tenant, then by shape, each group a heap, best first.

    Removal is lazy: a removed id stays in its heap until it reaches the top.
    """

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._live: dict[str, PendingEntry] = {}

    def __len__(self) -> int:
        return len(self._live)

    @property
    def shapes(self) -> int:
        """How many shapes a match may look at (the candidates it considers)."""
        return sum(len(queue.heaps) for queue in self._queues.values())

    def __contains__(self, work_request_id: object) -> bool:
        return work_request_id in self._live

    def add(self, entry: PendingEntry, task: Task) -> None:
        """Add a request; `task` is its task configured with its data."""
        if entry.id in self._live:
            return
        self._live[entry.id] = entry
        queue = self._queues.get(entry.tenant)
        if queue is None:
            queue = self._queues[entry.tenant] = _Queue()
        heap = queue.heaps.setdefault(entry.shape, [])
        heapq.heappush(heap, entry)
        queue.tasks.setdefault(entry.shape, task)
        if heap[0] is entry:  # the group's new head
            queue.offer(entry)

    def discard(self, work_request_id: str) -> PendingEntry | None:
        """Remove a request if it is here; return its entry."""
        return self._live.pop(work_request_id, None)

    def task(self, entry: PendingEntry) -> Task:
        """The configured task of an entry's shape (the entry is in the index)."""
        return self._queues[entry.tenant].tasks[entry.shape]

    def tenants(self) -> list[str]:
        """The tenants with requests in the index (perhaps only removed ones)."""
        return list(self._queues)

    def has_work(self, tenant: str) -> bool:
        """Whether `tenant` may have requests here (perhaps only removed ones)."""
        return tenant in self._queues

    def _head(self, queue: _Queue, shape: Shape) -> PendingEntry | None:
        """The live head of a group, its removed ones dropped (and the group
        with them, once empty)."""
        heap = queue.heaps.get(shape)
        if heap is None:
            return None
        live = self._live
        while heap and live.get(heap[0].id) is not heap[0]:
            heapq.heappop(heap)
        if heap:
            return heap[0]
        del queue.heaps[shape]
        del queue.tasks[shape]
        return None

    def best(self, tenant: str, runnable: Callable[[PendingEntry], bool]) -> PendingEntry | None:
        """The highest-priority, oldest request of `tenant` that is
        `runnable`: the groups' heads are looked at best first, up to the
        first that is (it stays in the index)."""
        queue = self._queues.get(tenant)
        if queue is None:
            return None
        seen: list[PendingEntry] = []
        try:
            while queue.order:
                candidate = queue.take()
                head = self._head(queue, candidate.shape)
                if head is None:
                    continue
                if head is not candidate:  # removed, or overtaken by a better one
                    queue.offer(head)
                    continue
                seen.append(head)
                if runnable(head):
                    return head
            return None
        finally:
            for head in seen:
                queue.offer(head)
            if not queue.heaps:
                del self._queues[tenant]


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


def best_of(
    tenant: str, worker: WorkerView, index: PendingIndex, verdicts: VerdictCache
) -> PendingEntry | None:
    """The highest-priority, oldest pending request of `tenant` that `worker`
    can run; what it cannot run is skipped, never waited behind."""

    def runnable(head: PendingEntry) -> bool:
        if worker.filters_out(head.shape.task_name):
            return False
        return verdicts.can_run(head.shape, index.task(head), worker)

    return index.best(tenant, runnable)


@dataclass(frozen=True)
class Share:
    """A tenant's claim on slots: its weight and its running ceiling."""

    weight: float = 1.0
    #: The most it may hold assigned or running at once; None: no limit.
    max_running: int | None = None


class Served:
    """How much each tenant has been served, in units of its weight (a
    virtual time, as in start-time fair queueing): between tenants holding
    the same share of slots, the one served least goes first. A tenant that
    comes back after having no work starts level with the one served last,
    so waiting for nothing banks nothing."""

    def __init__(self) -> None:
        self.level: dict[str, float] = {}
        self._now = 0.0

    def note(self, tenant: str, weight: float) -> None:
        """`tenant` was given a slot."""
        self._now = self.level.get(tenant, self._now)
        self.level[tenant] = self._now + 1 / weight

    def arrived(self, tenant: str) -> None:
        """`tenant` has work again after having none."""
        self.level[tenant] = max(self.level.get(tenant, 0.0), self._now)


class FairShare:
    """Which tenant a free slot serves: among the tenants with work the worker
    can run, the one with the fewest running per unit of weight, `running /
    weight` (Buildbarn's rule, which needs no history); ties go to the one
    served least for its weight (`Served`), which makes the shares come out
    as the weights say over time even where the slots cannot be split so at
    any moment (4 slots, weights 2:1: 3:1 and 2:2 in turn). A tenant at its
    running ceiling waits. A tenant alone gets every slot.

    The tenants wait in a heap kept from pass to pass (a pick costs the log
    of their number, not their number): whoever changes what a tenant runs,
    its weight, or gives it new work says so with `touch`, which puts it
    back with its new place (the old one is skipped when it comes up).
    """

    def __init__(
        self, running: Callable[[str], int], shares: Mapping[str, Share], served: Served
    ) -> None:
        self._running = running
        self._shares = shares
        self._served = served
        self._heap: list[tuple[float, float, int, str]] = []
        #: The version of each tenant's place in the heap; not there: not waiting.
        self._version: dict[str, int] = {}

    def touch(self, tenant: str) -> None:
        """`tenant` has new work, or runs more or less, or weighs otherwise:
        (re)place it in the heap."""
        version = self._version.get(tenant, 0) + 1
        self._version[tenant] = version
        heapq.heappush(self._heap, self._place(tenant, version))
        if len(self._heap) > 4 * len(self._version) + 64:  # mostly old places: start afresh
            self._heap = [self._place(t, v) for t, v in self._version.items()]
            heapq.heapify(self._heap)

    def _place(self, tenant: str, version: int) -> tuple[float, float, int, str]:
        fewest = self._running(tenant) / self._share(tenant).weight
        return fewest, self._served.level.get(tenant, 0.0), version, tenant

    def arrived(self, tenant: str) -> None:
        """`tenant` has work again after having none: in the heap, level."""
        self._served.arrived(tenant)
        self.touch(tenant)

    def _share(self, tenant: str) -> Share:
        return self._shares.get(tenant) or _EQUAL

    def at_ceiling(self, tenant: str) -> bool:
        """Whether `tenant` holds as many as its ceiling allows."""
        ceiling = self._share(tenant).max_running
        return ceiling is not None and self._running(tenant) >= ceiling

    def pick(
        self, worker: WorkerView, index: PendingIndex, verdicts: VerdictCache
    ) -> PendingEntry | None:
        """The request `worker` takes: the fairest tenant's best that it can
        run; None if it can run none. The caller counts it as running and
        touches its tenant."""
        passed: list[tuple[float, float, int, str]] = []
        try:
            while self._heap:
                place = heapq.heappop(self._heap)
                _, _, version, tenant = place
                if self._version.get(tenant) != version:
                    continue  # an old place: it was touched since
                if self.at_ceiling(tenant) or not index.has_work(tenant):
                    del self._version[tenant]  # back when touched: a request ends, work comes
                    continue
                entry = best_of(tenant, worker, index, verdicts) if worker.serves(tenant) else None
                if entry is None:
                    if index.has_work(tenant):
                        passed.append(place)  # others may run its work
                    else:
                        del self._version[tenant]
                    continue
                self._served.note(tenant, self._share(tenant).weight)
                self.touch(tenant)
                return entry
            return None
        finally:
            for place in passed:
                heapq.heappush(self._heap, place)


_EQUAL = Share()


def pick(worker: WorkerView, index: PendingIndex, verdicts: VerdictCache) -> PendingEntry | None:
    """The request `worker` takes, all tenants weighing the same and none
    running anything."""
    fair = FairShare(lambda _tenant: 0, {}, Served())
    for tenant in index.tenants():
        fair.touch(tenant)
    return fair.pick(worker, index, verdicts)
