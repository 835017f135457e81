"""The live side of workers: open sessions and what each known worker holds.

The dispatcher owns these objects; they hold no policy of their own beyond
their session's silence deadline and their free-slot count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import NamedTuple

from taskyard.errors import TaskyardError
from taskyard.scheduler.domain import Tenant, Worker, WorkRequest
from taskyard.scheduler.explain import WorkerStatus
from taskyard.scheduler.matching import WorkerView, fingerprint
from taskyard.scheduler.service import messages


class Session:
    """One open worker session: an outbox the servicer drains, and a deadline."""

    def __init__(
        self, worker_name: str, on_silence: Callable[[Session], None], silence: float
    ) -> None:
        self.worker_name = worker_name
        #: The worker said it is stopping: it takes no new work.
        self.draining = False
        #: Assignments the worker queues beyond its slots (its hello says).
        self.prefetch = 0
        self.outbox: asyncio.Queue[messages.SessionMessage | None] = asyncio.Queue()
        self.closed = False
        #: Why the scheduler ended the session, when the worker broke the protocol.
        self.failure: TaskyardError | None = None
        self._on_silence = on_silence
        self._silence = silence
        self._loop = asyncio.get_running_loop()
        self._heard = self._loop.time()
        self._deadline: asyncio.TimerHandle | None = self._loop.call_later(silence, self._check)

    def touch(self) -> None:
        """The worker spoke: push the silence deadline back (lazily: the timer
        re-arms itself when it fires, so a message costs no timer churn)."""
        self._heard = self._loop.time()

    def quiet_for(self) -> float:
        """Seconds since the worker last said anything on this session."""
        return self._loop.time() - self._heard

    def _check(self) -> None:
        quiet = self._loop.time() - self._heard
        if quiet >= self._silence:
            self._deadline = None
            self._on_silence(self)
        else:
            self._deadline = self._loop.call_later(self._silence - quiet, self._check)

    async def ready(self) -> list[messages.SessionMessage] | None:
        """Wait for the next message; return it with every other one queued
        behind it (sent together), or None once the session has ended."""
        first = await self.outbox.get()
        if first is None:
            return None
        ready = [first]
        while not self.outbox.empty():
            message = self.outbox.get_nowait()
            if message is None:
                self.outbox.put_nowait(None)  # the end comes after this batch
                break
            ready.append(message)
        return ready

    def send(self, message: messages.SessionMessage) -> None:
        """Queue a message for the worker (dropped once the session closed)."""
        if not self.closed:
            self.outbox.put_nowait(message)

    def close(self, final: messages.Closing | None = None) -> None:
        """End the session: the servicer sends `final`, if any, then ends the stream."""
        if self.closed:
            return
        if final is not None:
            self.outbox.put_nowait(final)
        self.closed = True
        self.outbox.put_nowait(None)
        if self._deadline is not None:
            self._deadline.cancel()


@dataclass
class LiveWorker:
    """A known worker, its session if it has one, and the work it holds."""

    worker: Worker
    view: WorkerView
    session: Session | None = None
    #: Ids of the work requests occupying the worker's slots.
    busy: set[str] = field(default_factory=set)
    #: Its session is held by another living scheduler of the database.
    elsewhere: bool = False

    @property
    def connected(self) -> bool:
        """Whether some scheduler of the farm holds its session (work goes to
        it only through the one that does)."""
        return self.session is not None or self.elsewhere

    def free_slots(self) -> int:
        if self.session is None or self.session.draining or not self.worker.enabled:
            return 0
        return max(0, self.worker.slots - len(self.busy))

    def queue_room(self) -> int:
        """How many more assignments it would queue behind full slots."""
        session = self.session
        if session is None or session.draining or not self.worker.enabled or self.free_slots():
            return 0
        return max(0, self.worker.slots + session.prefetch - len(self.busy))

    def status(self) -> WorkerStatus:
        free = max(0, self.worker.slots - len(self.busy))  # prefetched work fills past the slots
        return WorkerStatus(self.view, self.worker.enabled, self.connected, free)


class ByTenant(MutableMapping[str, WorkRequest]):
    """Requests by id, counted by tenant as they come and go (what fair
    share and quotas read: no scan)."""

    def __init__(self, changed: Callable[[str], None] = lambda tenant: None) -> None:
        self._requests: dict[str, WorkRequest] = {}
        #: How many of them each tenant has.
        self.counts: Counter[str] = Counter()
        #: Told of each tenant whose count changed.
        self._changed = changed

    def __getitem__(self, work_request_id: str) -> WorkRequest:
        return self._requests[work_request_id]

    def __setitem__(self, work_request_id: str, work_request: WorkRequest) -> None:
        before = self._requests.get(work_request_id)
        self._requests[work_request_id] = work_request
        if before is None or before.tenant != work_request.tenant:
            if before is not None:
                self._count(before.tenant, -1)
            self._count(work_request.tenant, 1)

    def __delitem__(self, work_request_id: str) -> None:
        before = self._requests.pop(work_request_id)
        self._count(before.tenant, -1)

    def _count(self, tenant: str, change: int) -> None:
        self.counts[tenant] += change
        self._changed(tenant)

    def __iter__(self) -> Iterator[str]:
        return iter(self._requests)

    def __len__(self) -> int:
        return len(self._requests)


def view_of(worker: Worker) -> WorkerView:
    """The matching view of a worker's effective metadata and task lists."""
    metadata = worker.metadata
    return WorkerView(
        worker.name,
        metadata,
        frozenset(worker.allowed_tasks),
        frozenset(worker.denied_tasks),
        fingerprint(metadata),
        frozenset(worker.tenants),
    )


class TenantUsage(NamedTuple):
    """What a tenant holds now, against its weight."""

    name: str
    weight: float
    running: int
    pending: int
    #: Its fraction of everything running, and the fraction its weight
    #: entitles it to among the tenants with work (running or pending).
    share: float
    entitled: float


def usage_of(
    tenants: Iterable[Tenant], running: Counter[str], pending: Counter[str]
) -> list[TenantUsage]:
    """Every tenant's usage; a tenant with no work is entitled to nothing."""
    known = list(tenants)
    total = sum(running.values())
    waiting = {t.name for t in known if running[t.name] or pending[t.name]}
    busy_weight = sum(t.weight for t in known if t.name in waiting)
    return [
        TenantUsage(
            t.name,
            t.weight,
            running[t.name],
            pending[t.name],
            running[t.name] / total if total else 0.0,
            t.weight / busy_weight if t.name in waiting else 0.0,
        )
        for t in known
    ]


class WorkerCounts(NamedTuple):
    """The fleet at a glance."""

    connected: int
    enabled: int
    #: Connected workers running at least one request.
    busy: int
    #: Slots of connected, enabled workers, and how many of them hold work.
    slots: int
    slots_in_use: int


def count_workers(workers: Iterable[LiveWorker]) -> WorkerCounts:
    """Count the fleet (a copy is taken first: metrics read from another thread)."""
    live = list(workers)
    serving = [w for w in live if w.connected and w.worker.enabled]
    return WorkerCounts(
        connected=sum(w.connected for w in live),
        enabled=sum(w.worker.enabled for w in live),
        busy=sum(bool(w.busy) for w in live if w.connected),
        slots=sum(w.worker.slots for w in serving),
        slots_in_use=sum(min(len(w.busy), w.worker.slots) for w in serving),
    )
