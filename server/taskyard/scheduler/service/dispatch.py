"""Hands pending work to free worker slots the moment both exist, and keeps
leases honest: heartbeats, lost sessions, timeouts.

Event-driven: a submit, a freed slot, a new session or a metadata change
calls `kick()`, which schedules one matching pass. There is no polling loop.
The pending queue lives in the database; `index` is its in-memory index,
rebuilt at start, and a claim is a compare-and-set in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import datetime
from typing import Any

from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import (
    ACTIVE_STATES,
    Attempt,
    State,
    Tenant,
    Worker,
    WorkError,
    WorkRequest,
)
from taskyard.scheduler.matching import (
    FairShare,
    PendingEntry,
    PendingIndex,
    Served,
    Shape,
    Share,
    VerdictCache,
    WorkerView,
)
from taskyard.scheduler.service import messages, metrics, pipelines
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.service.configured import configured, shape_of
from taskyard.scheduler.service.feed import ChangeFeed
from taskyard.scheduler.service.live import (
    ByTenant,
    LiveWorker,
    TenantUsage,
    count_workers,
    usage_of,
    view_of,
)
from taskyard.scheduler.service.observers import Decision, Observer
from taskyard.scheduler.service.sessions import Clock, Scheduling, Settings, WorkerSessions
from taskyard.scheduler.store.port import StoreTransaction
from taskyard.tasks import Task

log = logging.getLogger(__name__)
#: Runs first in a write and may refuse it (raising).
Guard = Callable[[StoreTransaction], None]


class Dispatcher:
    """Owns the live scheduling state; every change to it goes through here
    (the workers' side of it through `sessions`)."""

    def __init__(
        self,
        db: GroupCommitter,
        feed: ChangeFeed,
        clock: Clock,
        settings: Settings,
        scheduler_id: str = "",
    ) -> None:
        self.db = db
        self.feed = feed
        self.clock = clock
        self.settings = settings
        self.index = PendingIndex()
        self.verdicts = VerdictCache()
        self.workers: dict[str, LiveWorker] = {}
        #: The tenants, and what matching reads of them: weight and running
        #: ceiling (a tenant not there: weight 1, no ceiling).
        self.tenants: dict[str, Tenant] = {}
        self.shares: dict[str, Share] = {}
        #: Requests claimed by a matching pass, not yet committed, by tenant;
        #: and requests ending (`releasing`).
        self._claiming: Counter[str] = Counter()
        self._ending: Counter[str] = Counter()
        self.fair = FairShare(self._running_of, self.shares, Served())
        self.pending = ByTenant()
        self.active = ByTenant(self.fair.touch)
        self._kicked = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.assignments = 0
        #: Tracing and metrics, when configured: told of each committed event.
        self.observers: list[Observer] = []
        self.sessions = WorkerSessions(
            Scheduling(db, feed, clock, settings, self.workers, self.active, self.observers,
                       commit=self.commit, scheduler_id=scheduler_id, kick=self.kick,
                       spawn=self._spawn, releasing=self.releasing)
        )  # fmt: skip

    # -- Lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start matching, and publish the live state as metrics."""
        self._loop_task = asyncio.create_task(self._match_forever())
        metrics.observe(
            lambda: [*self.pending.values(), *self.active.values()],
            lambda: count_workers(self.workers.values()),
            self.usage,
        )

    def usage(self) -> list[TenantUsage]:
        """What each tenant holds now, against its weight."""
        return usage_of(list(self.tenants.values()), self.running(), self.pending.counts)

    async def stop(self) -> None:
        """Stop matching; close every session."""
        for live in self.workers.values():
            if live.session is not None:
                live.session.close(messages.Closing("the scheduler is shutting down", 1.0))
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    # -- State loading and bookkeeping ------------------------------------

    def load(
        self, workers: Iterable[Worker], requests: Iterable[WorkRequest]
    ) -> list[tuple[WorkRequest, WorkError]]:
        """Rebuild the live state from the store at start-up.

        Returns the requests that cannot run any more, with why: their task
        is no longer registered, or what was stored cannot be used (set
        aside, logged once, so that the scheduler starts and serves the rest).
        """
        unrunnable = []
        for worker in workers:
            self.workers[worker.name] = LiveWorker(worker, _readable_view(worker))
        for request in requests:
            if not Task.is_valid_task_name(request.task_name):
                why = f"task {request.task_name!r} is not registered"
                unrunnable.append((request, WorkError("unknown-task", why)))
                continue
            try:
                if request.state in ACTIVE_STATES:
                    self._hold(request)
                else:
                    self.enqueue(request, configured_task(request))
            except Exception as error:
                log.error("request %s cannot be used as stored (%r); set aside", request.id, error)
                why = f"set aside at start: what was stored cannot be used ({error!r:.200})"
                unrunnable.append((request, WorkError("quarantined", why)))
        return unrunnable

    def enqueue(self, work_request: WorkRequest, task: Task) -> None:
        """Make a committed pending request available to matching."""
        self.pending[work_request.id] = work_request
        entry = PendingEntry.of(
            work_request.id,
            shape_of(work_request),
            work_request.priority,
            work_request.queue_key,
            work_request.tenant,
        )
        back = not self.index.has_work(work_request.tenant)
        self.index.add(entry, task)
        if back:
            self.fair.arrived(work_request.tenant)
        else:
            self.fair.touch(work_request.tenant)
        self.kick()

    def _hold(self, work_request: WorkRequest) -> None:
        """Track an active request against its worker's slots."""
        self.active[work_request.id] = work_request
        live = self.workers.get(work_request.worker_name)
        if live is not None:
            live.busy.add(work_request.id)

    def _settle(self, after: WorkRequest) -> None:
        """Update the live state after a committed change to `after`."""
        self.pending.pop(after.id, None)
        self.index.discard(after.id)
        if after.state in ACTIVE_STATES:
            self.active[after.id] = after
        elif self.active.pop(after.id, None) is not None:
            self.kick()  # its tenant holds one fewer: one held back may go
        if after.state is State.PENDING:
            self.enqueue(after, configured_task(after))
        self.feed.publish(after)

    def absorb(self, work_request_id: str, after: WorkRequest | None) -> None:
        """Apply a change another scheduler committed (None: the request is
        gone), read back from the store: as if committed here, but the
        abort it asked for goes to its worker only if the worker's session
        is here."""
        before = self.active.get(work_request_id)
        if before is not None:
            holder = self.workers.get(before.worker_name)
            if holder is not None:
                holder.busy.discard(work_request_id)
        if after is None:
            self.pending.pop(work_request_id, None)
            self.index.discard(work_request_id)
            self.active.pop(work_request_id, None)
            return
        if after.state in ACTIVE_STATES:
            holder = self.workers.get(after.worker_name)
            if holder is not None:
                holder.busy.add(work_request_id)
            asked = after.abort_requested_at is not None
            if asked and (before is None or before.abort_requested_at is None):
                self.send_abort(after, messages.AbortReason.USER, "aborted by a user")
        self._settle(after)

    def forget_worker(self, name: str) -> None:
        """Another scheduler removed a worker."""
        live = self.workers.pop(name, None)
        if live is not None and live.session is not None:
            live.session.close(messages.Closing(f"worker {name} was removed", 5.0))
        self.feed.worker_changed()

    async def commit(
        self,
        before: WorkRequest,
        after: WorkRequest,
        via: WorkRequest | None = None,
        why: WorkError | None = None,
        guard: Guard | None = None,
    ) -> bool:
        """Compare-and-set `before -> after` in the store; on success update the
        live state. `via` is a state passed through on the way, in the same
        write (a start reported together with the completion). An attempt that
        ends is recorded in the same write, with `why` when `after` says
        nothing of it (a request sent back to the queue). `guard` runs first
        in the write and may refuse it (maintenance: its lease's term)."""
        ended = None
        if before.state in ACTIVE_STATES and after.state not in ACTIVE_STATES:
            ended = Attempt.ended(before, after, why)

        def write(tx: StoreTransaction) -> pipelines.Changes | None:
            if guard is not None:
                guard(tx)
            changed = tx.replace_work_request(
                after, expected_state=before.state, expected_attempt=before.attempt
            )
            if not changed:
                return None
            if ended is not None:
                tx.insert_attempt(ended)
            tx.announce("request", after.id)
            # What waits for it moves on in the same commit.
            return pipelines.follow(tx, before, after, after.updated_at or self.clock())

        downstream = await self.db.run(write)
        if downstream is None:
            return False
        if via is not None:
            self.feed.publish(via)
        self._settle(after)
        for observer in self.observers:
            if via is not None:
                observer.transitioned(before, via)
            observer.transitioned(before, after)
        for old, new in downstream:
            self._settle(new)
            for observer in self.observers:
                observer.transitioned(old, new)
        return True

    # -- Matching ---------------------------------------------------------

    def kick(self) -> None:
        """Ask for a matching pass soon (cheap; passes coalesce)."""
        self._kicked.set()

    async def _match_forever(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked.clear()
            self.match_once()

    def running(self) -> Counter[str]:
        """Each tenant's requests assigned or running, and being claimed."""
        return self.active.counts + self._claiming - self._ending

    def _running_of(self, tenant: str) -> int:
        return self.active.counts[tenant] + self._claiming[tenant] - self._ending[tenant]

    @contextlib.contextmanager
    def releasing(self, work_request_id: str) -> Iterator[None]:
        """While a request whose slot was freed has its end committed, fair
        share counts it as ended already (the slot it frees is decided on
        before the commit)."""
        current = self.active.get(work_request_id)
        if current is None:
            yield
            return
        self._ending[current.tenant] += 1
        self.fair.touch(current.tenant)
        try:
            yield
        finally:
            self._ending[current.tenant] -= 1
            self.fair.touch(current.tenant)

    def _claimed_by(self, tenant: str, change: int) -> None:
        self._claiming[tenant] += change
        self.fair.touch(tenant)

    def match_once(self) -> int:
        """Give every free slot the best pending request it can run, the
        tenants taking turns by fair share; then, with work still left, fill
        the queues of workers that prefetch. Return how many."""
        claims: list[tuple[LiveWorker, WorkRequest, Decision]] = []
        for room in (LiveWorker.free_slots, LiveWorker.queue_room):
            for live in self.workers.values():
                self._fill(live, room, claims)
        if claims:
            self._spawn(self._claim(claims))
        return len(claims)

    def _fill(
        self,
        live: LiveWorker,
        room: Callable[[LiveWorker], int],
        claims: list[tuple[LiveWorker, WorkRequest, Decision]],
    ) -> None:
        verdicts = self.verdicts
        while room(live) > 0:
            hits = verdicts.hits
            entry = self.fair.pick(live.view, self.index, verdicts)
            if entry is None:
                return
            decision = Decision(self.index.shapes, verdicts.hits - hits)
            self.index.discard(entry.id)
            live.busy.add(entry.id)
            self._claimed_by(entry.tenant, 1)
            claims.append((live, self.pending.pop(entry.id), decision))

    async def _claim(self, claims: list[tuple[LiveWorker, WorkRequest, Decision]]) -> None:
        """Claim the requests of one matching pass, in one store operation."""
        now = self.clock()
        assigned = [lifecycle.assign(w, live.worker.name, now) for live, w, _ in claims]
        try:
            won = await self.db.run(lambda tx: [_claimed(tx, a) for a in assigned])
        except Exception:
            log.exception("could not claim %d request(s); they stay pending", len(claims))
            won = [False] * len(claims)
        for (live, work_request, decision), claimed, ok in zip(claims, assigned, won, strict=True):
            self._claimed_by(work_request.tenant, -1)
            if ok:
                queued_since = work_request.updated_at or work_request.created_at
                self.assigned(live, claimed, queued_since, decision)
            else:
                live.busy.discard(work_request.id)
                self._spawn(self._requeue_unclaimed(work_request.id))

    async def _requeue_unclaimed(self, work_request_id: str) -> None:
        """A claim lost to a concurrent change: queue the request again if it is
        still pending."""
        current = await self.db.run(lambda tx: tx.get_work_request(work_request_id))
        if current is not None and current.state is State.PENDING:
            self.enqueue(current, configured_task(current))

    def at_ceiling(self, tenant: str) -> bool:
        """Whether `tenant` holds as many assigned or running as it may."""
        return self.fair.at_ceiling(tenant)

    def reserve(self, task: Task, shape: Shape, tenant: str) -> tuple[LiveWorker, Decision] | None:
        """A free worker that can run a new request of `task` for `tenant`
        now, and the decision that chose it.

        A free worker has no pending request it could run (it would hold it
        already), so giving it the new request keeps the priority order and
        the fair share; a tenant at its running ceiling waits.
        """
        if self.at_ceiling(tenant):
            return None
        hits = self.verdicts.hits
        for seen, live in enumerate(self.workers.values(), 1):
            if live.free_slots() <= 0 or live.view.filters_out(task.name):
                continue
            if not live.view.serves(tenant):
                continue
            if self.verdicts.can_run(shape, task, live.view):
                return live, Decision(seen, self.verdicts.hits - hits)
        return None

    def refusals(self, task: Task, shape: Shape) -> dict[str, int]:
        """Why each worker would not take a request of `shape` now, counted by
        reason (cached verdicts: cheap enough for every traced submit)."""
        counts: dict[str, int] = {}
        for live in self.workers.values():
            if not live.worker.enabled:
                reason = "disabled"
            elif not live.connected:
                reason = "not-connected"
            elif live.view.filters_out(task.name):
                reason = "filtered"
            elif not self.verdicts.can_run(shape, task, live.view):
                reason = "cannot-run"
            else:
                reason = "busy" if live.free_slots() == 0 else "eligible"
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def assigned(
        self, live: LiveWorker, assigned: WorkRequest, queued_since: datetime, decision: Decision
    ) -> None:
        """A committed assignment: hold it against the worker and push it."""
        for observer in self.observers:
            observer.assigned(assigned, live.worker.name, queued_since, decision, len(self.pending))
        live.busy.add(assigned.id)
        self.assignments += 1
        self.active[assigned.id] = assigned
        self.feed.publish(assigned)
        task_class = Task.class_from_name(assigned.task_name)
        if live.session is not None:
            timeout = effective_timeout(assigned)
            live.session.send(messages.Assign(assigned, task_class.TASK_VERSION or 0, timeout))

    def send_abort(self, work_request: WorkRequest, reason: messages.AbortReason, why: str) -> None:
        """Tell the worker holding `work_request` to stop it, if it is connected."""
        live = self.workers.get(work_request.worker_name)
        if live is not None and live.session is not None:
            live.session.send(messages.AbortWork(work_request.lease, reason, why))


def _claimed(tx: StoreTransaction, assigned: WorkRequest) -> bool:
    """Claim a pending request (compare-and-set), telling the other schedulers."""
    won = tx.claim_work_request(assigned)
    if won:
        tx.announce("request", assigned.id)
    return won


def _readable_view(worker: Worker) -> WorkerView:
    """The matching view of a stored worker, or, should its metadata be
    unusable, the view of the worker without it (logged once)."""
    try:
        return view_of(worker)
    except Exception as error:
        log.error("worker %s: stored metadata cannot be used (%r); set aside", worker.name, error)
        return view_of(dataclasses.replace(worker, dynamic_metadata={}, static_metadata={}))


def configured_task(work_request: WorkRequest) -> Task:
    """The request's task configured with its data (validated at submit; shared,
    read-only)."""
    return configured(work_request.task_name, work_request.task_data_json)


def effective_timeout(work_request: WorkRequest) -> float | None:
    """The request's timeout, else its task's default, else none."""
    if work_request.timeout_seconds is not None:
        return work_request.timeout_seconds
    task_class = Task.class_from_name(work_request.task_name)
    return task_class.DEFAULT_TIMEOUT_SECONDS


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background step failed", exc_info=task.exception())
