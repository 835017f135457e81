"""Hands pending work to free worker slots the moment both exist, and keeps
leases honest: heartbeats, lost sessions, timeouts.

Event-driven: a submit, a freed slot, a new session or a metadata change
calls `kick()`, which schedules one matching pass. There is no polling loop.
The pending queue lives in the database; `index` is its in-memory index,
rebuilt at start, and a claim is a compare-and-set in the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from taskyard.errors import FailedPreconditionError, NotFoundError
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import (
    ACTIVE_STATES,
    FINAL_STATES,
    Lease,
    Result,
    State,
    Worker,
    WorkError,
    WorkRequest,
)
from taskyard.scheduler.matching import (
    PendingEntry,
    PendingIndex,
    Shape,
    VerdictCache,
    WorkerView,
    pick,
)
from taskyard.scheduler.service import messages, metrics, tracing
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.service.configured import configured, shape_of
from taskyard.scheduler.service.feed import ChangeFeed
from taskyard.scheduler.service.live import LiveWorker, Session, view_of
from taskyard.scheduler.store.port import StoreTransaction
from taskyard.tasks import Task

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class StaleLeaseError(FailedPreconditionError):
    """A report names an attempt the worker no longer holds."""

    default_reason = "STALE_LEASE"


@dataclass(frozen=True)
class Settings:
    """Timing and policy of the dispatcher."""

    heartbeat_interval: float = 10.0
    #: How long a worker's leases outlive its session.
    lease_grace: float = 30.0
    #: Missed heartbeat intervals before a silent session is closed.
    missed_heartbeats: int = 3
    default_max_attempts: int = 3


class Decision(NamedTuple):
    """What one matching decision weighed, for its span: how many candidates
    (pending shapes for a free slot, or workers for a new request) and how
    many of the verdicts it asked for came from the cache. (A tuple: one is
    made for every assignment, traced or not.)"""

    candidates: int
    cache_hits: int


class Dispatcher:
    """Owns the live scheduling state; every change to it goes through here."""

    def __init__(
        self, db: GroupCommitter, feed: ChangeFeed, clock: Clock, settings: Settings
    ) -> None:
        self.db = db
        self.feed = feed
        self.clock = clock
        self.settings = settings
        self.index = PendingIndex()
        self.verdicts = VerdictCache()
        self.workers: dict[str, LiveWorker] = {}
        self.pending: dict[str, WorkRequest] = {}
        self.active: dict[str, WorkRequest] = {}
        self._timeouts: dict[str, asyncio.TimerHandle] = {}
        self._kicked = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.assignments = 0

    # -- Lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start matching, and publish the live state as metrics."""
        self._loop_task = asyncio.create_task(self._match_forever())
        metrics.observe(lambda: list(self.pending.values()), self._worker_counts)

    def _worker_counts(self) -> tuple[int, int, int]:
        """Connected workers, enabled workers, free slots."""
        live = list(self.workers.values())
        return (
            sum(w.connected for w in live),
            sum(w.worker.enabled for w in live),
            sum(w.free_slots() for w in live),
        )

    async def stop(self) -> None:
        """Stop matching and every timer; close every session."""
        for live in self.workers.values():
            if live.grace is not None:
                live.grace.cancel()
            if live.session is not None:
                live.session.close(messages.Closing("the scheduler is shutting down", 1.0))
        for timer in self._timeouts.values():
            timer.cancel()
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
        for live in self.workers.values():
            if live.busy:
                self._start_grace(live)
        return unrunnable

    def enqueue(self, work_request: WorkRequest, task: Task) -> None:
        """Make a committed pending request available to matching."""
        self.pending[work_request.id] = work_request
        entry = PendingEntry.of(
            work_request.id,
            shape_of(work_request),
            work_request.priority,
            work_request.queue_key,
        )
        self.index.add(entry, task)
        self.kick()

    def _hold(self, work_request: WorkRequest) -> None:
        """Track an active request against its worker's slots and its timeout."""
        self.active[work_request.id] = work_request
        live = self.workers.get(work_request.worker_name)
        if live is not None:
            live.busy.add(work_request.id)
        self._arm_timeout(work_request)

    def _settle(self, after: WorkRequest) -> None:
        """Update the live state after a committed change to `after`."""
        self.pending.pop(after.id, None)
        self.index.discard(after.id)
        if after.state in ACTIVE_STATES:
            self.active[after.id] = after
        else:
            self.active.pop(after.id, None)
            timer = self._timeouts.pop(after.id, None)
            if timer is not None:
                timer.cancel()
        if after.state is State.PENDING:
            self.enqueue(after, configured_task(after))
        self.feed.publish(after)

    async def commit(
        self, before: WorkRequest, after: WorkRequest, via: WorkRequest | None = None
    ) -> bool:
        """Compare-and-set `before -> after` in the store; on success update the
        live state. `via` is a state passed through on the way, in the same
        write (a start reported together with the completion)."""
        changed = await self.db.run(
            lambda tx: tx.replace_work_request(
                after, expected_state=before.state, expected_attempt=before.attempt
            )
        )
        if changed:
            if via is not None:
                self.feed.publish(via)
                _observe(before, via)
            self._settle(after)
            _observe(before, after)
        return bool(changed)

    # -- Matching ---------------------------------------------------------

    def kick(self) -> None:
        """Ask for a matching pass soon (cheap; passes coalesce)."""
        self._kicked.set()

    async def _match_forever(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked.clear()
            self.match_once()

    def match_once(self) -> int:
        """Give every free slot the best pending request it can run; return how many."""
        claims: list[tuple[LiveWorker, WorkRequest, Decision]] = []
        verdicts = self.verdicts
        for live in self.workers.values():
            while live.free_slots() > 0:
                hits = verdicts.hits
                entry = pick(live.view, self.index, verdicts)
                if entry is None:
                    break
                decision = Decision(self.index.shapes, verdicts.hits - hits)
                self.index.discard(entry.id)
                live.busy.add(entry.id)
                claims.append((live, self.pending.pop(entry.id), decision))
        if claims:
            self._spawn(self._claim(claims))
        return len(claims)

    async def _claim(self, claims: list[tuple[LiveWorker, WorkRequest, Decision]]) -> None:
        """Claim the requests of one matching pass, in one store operation."""
        now = self.clock()
        assigned = [lifecycle.assign(w, live.worker.name, now) for live, w, _ in claims]
        try:
            won = await self.db.run(lambda tx: [tx.claim_work_request(a) for a in assigned])
        except Exception:
            log.exception("could not claim %d request(s); they stay pending", len(claims))
            won = [False] * len(claims)
        for (live, work_request, decision), claimed, ok in zip(claims, assigned, won, strict=True):
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

    def reserve(self, task: Task, shape: Shape) -> tuple[LiveWorker, Decision] | None:
        """A free worker that can run a new request of `task` now, and the
        decision that chose it.

        A free worker has no pending request it could run (it would hold it
        already), so giving it the new request keeps the priority order.
        """
        hits = self.verdicts.hits
        for seen, live in enumerate(self.workers.values(), 1):
            if live.free_slots() <= 0 or live.view.filters_out(task.name):
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
        spans = tracing.spans_of(assigned)
        if spans is not None:
            self._trace_assignment(spans, live.worker.name, assigned, queued_since, decision)
        live.busy.add(assigned.id)
        self.assignments += 1
        self.active[assigned.id] = assigned
        self._arm_timeout(assigned)
        self.feed.publish(assigned)
        task_class = Task.class_from_name(assigned.task_name)
        if live.session is not None:
            timeout = effective_timeout(assigned)
            live.session.send(messages.Assign(assigned, task_class.TASK_VERSION or 0, timeout))

    def _trace_assignment(
        self,
        spans: tracing.RequestSpans,
        worker: str,
        assigned: WorkRequest,
        queued_since: datetime,
        decision: Decision,
    ) -> None:
        spans.record("taskyard.queue_wait", start=queued_since, end=assigned.assigned_at)
        spans.record(
            "taskyard.match",
            {
                "taskyard.worker": worker,
                "taskyard.candidates": decision.candidates,
                "taskyard.cache_hits": decision.cache_hits,
                "taskyard.pending": len(self.pending),
            },
        )
        spans.record("taskyard.assign", {"taskyard.worker": worker})

    # -- Timeouts ---------------------------------------------------------

    def _arm_timeout(self, work_request: WorkRequest) -> None:
        seconds = effective_timeout(work_request)
        if seconds is None or work_request.assigned_at is None:
            return
        elapsed = (self.clock() - work_request.assigned_at).total_seconds()
        loop = asyncio.get_running_loop()
        self._timeouts[work_request.id] = loop.call_later(
            max(0.0, seconds - elapsed),
            lambda: self._spawn(self._time_out(work_request.lease, seconds)),
        )

    async def _time_out(self, lease: Lease, seconds: float) -> None:
        current = self.active.get(lease.work_request_id)
        if current is None or current.attempt != lease.attempt:
            return
        error = WorkError("timeout", f"the task ran longer than its {seconds:g}s timeout")
        finished = lifecycle.complete(current, Result.ERROR, self.clock(), error=error)
        if await self.commit(current, finished):
            self.send_abort(current, messages.AbortReason.TIMEOUT, error.message)

    def send_abort(self, work_request: WorkRequest, reason: messages.AbortReason, why: str) -> None:
        """Tell the worker holding `work_request` to stop it, if it is connected."""
        live = self.workers.get(work_request.worker_name)
        if live is not None and live.session is not None:
            live.session.send(messages.AbortWork(work_request.lease, reason, why))

    # -- Sessions -----------------------------------------------------------

    async def open_session(
        self, worker: Worker, metadata: dict[str, Any], slots: int, running: Iterable[Lease]
    ) -> Session:
        """Open a worker's session after its hello and reconcile what it runs."""
        updated = await self.db.run(
            lambda tx: _save_hello(tx, worker.name, metadata, slots, self.clock())
        )
        live = self.workers.setdefault(updated.name, LiveWorker(updated, view_of(updated)))
        live.worker, live.view = updated, view_of(updated)
        if live.session is not None:
            live.session.close(messages.Closing("replaced by a newer session", 0.0))
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        silence = self.settings.heartbeat_interval * self.settings.missed_heartbeats
        session = Session(updated.name, self._silent, silence)
        live.session = session
        session.send(
            messages.Welcome(
                updated.name, self.settings.heartbeat_interval, self.settings.lease_grace
            )
        )
        await self._reconcile(live, {lease.work_request_id: lease for lease in running})
        self.kick()
        return session

    async def _reconcile(self, live: LiveWorker, reported: dict[str, Lease]) -> None:
        """Keep the leases the worker still holds; requeue the ones it lost; abort the rest."""
        held = [w for w in self.active.values() if w.worker_name == live.worker.name]
        live.busy = set()
        for work_request in held:
            if reported.pop(work_request.id, None) == work_request.lease:
                live.busy.add(work_request.id)
                continue
            lost = lifecycle.requeue_or_fail(
                work_request, self.clock(), "worker-lost", "the worker came back without it"
            )
            await self.commit(work_request, lost)
        for lease in reported.values():
            if live.session is not None:
                why = "the scheduler no longer assigns this attempt to you"
                live.session.send(messages.AbortWork(lease, messages.AbortReason.LEASE_LOST, why))

    def close_session(self, session: Session) -> None:
        """The session's stream ended: its leases survive for the grace period."""
        session.close()
        live = self.workers.get(session.worker_name)
        if live is None or live.session is not session:
            return
        live.session = None
        self._start_grace(live)

    def _silent(self, session: Session) -> None:
        log.warning("worker %s sent nothing for too long; closing its session", session.worker_name)
        session.close()

    def _start_grace(self, live: LiveWorker) -> None:
        loop = asyncio.get_running_loop()
        name = live.worker.name
        live.grace = loop.call_later(
            self.settings.lease_grace, lambda: self._spawn(self._expire_leases(name))
        )

    async def _expire_leases(self, worker_name: str) -> None:
        live = self.workers[worker_name]
        live.grace = None
        if live.session is not None:
            return
        for work_request in [w for w in self.active.values() if w.worker_name == worker_name]:
            lost = lifecycle.requeue_or_fail(
                work_request, self.clock(), "worker-lost", f"worker {worker_name} was lost"
            )
            log.warning("lease of %s on %s expired: %s", work_request.id, worker_name, lost.state)
            if await self.commit(work_request, lost):
                tracing.record(
                    "taskyard.lease_expired", work_request, {"taskyard.worker": worker_name}
                )
                metrics.lease_expiries.add(
                    1, {"taskyard.task": work_request.task_name}, tracing.context_of(work_request)
                )
        live.busy.clear()

    # -- Reports ------------------------------------------------------------

    def _current(self, session: Session, lease: Lease) -> WorkRequest:
        current = self.active.get(lease.work_request_id)
        if current is None or current.lease != lease or current.worker_name != session.worker_name:
            raise StaleLeaseError(
                f"lease {lease.work_request_id}#{lease.attempt} is not held by "
                f"worker {session.worker_name}",
                metadata={"work_request_id": lease.work_request_id},
            )
        return current

    async def started(self, session: Session, lease: Lease) -> None:
        """The worker started an assignment."""
        current = self._current(session, lease)
        if current.state is State.ASSIGNED:
            await self.commit(current, lifecycle.start(current, self.clock()))

    async def declined(self, session: Session, lease: Lease, reason: str) -> None:
        """The worker gave back an assignment it did not start."""
        current = self._current(session, lease)
        if current.state is not State.ASSIGNED:
            raise FailedPreconditionError(
                f"work request {lease.work_request_id} has started; it can only be completed now",
                reason="ALREADY_STARTED",
            )
        live = self.workers.get(session.worker_name)
        if live is not None:
            live.busy.discard(lease.work_request_id)
        if not await self.commit(current, lifecycle.decline(current, self.clock())):
            raise StaleLeaseError(f"work request {lease.work_request_id} changed meanwhile")
        log.info("%s gave back %s: %s", session.worker_name, current.id, reason)
        tracing.record(
            "taskyard.declined",
            current,
            {"taskyard.worker": session.worker_name, "taskyard.reason": reason},
        )
        self.kick()

    def draining(self, session: Session) -> None:
        """The worker is stopping: give it no new work."""
        if not session.draining:
            session.draining = True
            log.info("worker %s is stopping; it gets no new work", session.worker_name)

    async def completed(
        self,
        session: Session,
        lease: Lease,
        outcome: lifecycle.Outcome,
        output_json: str,
        error: WorkError | None,
        *,
        started: bool = False,
    ) -> None:
        """The worker finished an assignment (and, with `started`, reported its
        start in the same message). A resent report of a recorded result is
        accepted again (its first acknowledgement may have been lost)."""
        live = self.workers.get(session.worker_name)
        if live is not None:
            live.busy.discard(lease.work_request_id)
            self.kick()
        try:
            current = self._current(session, lease)
        except StaleLeaseError:
            if await self._already_recorded(session, lease, outcome):
                return
            raise
        now = self.clock()
        running = None
        if started and current.state is State.ASSIGNED:
            running = lifecycle.start(current, now)
        finished = lifecycle.finish(
            running or current, outcome, now, output_json=output_json, error=error
        )
        if not await self.commit(current, finished, via=running):
            raise StaleLeaseError(f"work request {lease.work_request_id} changed meanwhile")
        spans = tracing.spans_of(current)
        if spans is not None:
            attributes: tracing.Attributes = {
                "taskyard.outcome": outcome.value,
                "taskyard.state": finished.state.value,
            }
            if finished.result.value:
                attributes["taskyard.result"] = finished.result.value
            spans.record("taskyard.complete", attributes)

    async def _already_recorded(
        self, session: Session, lease: Lease, outcome: lifecycle.Outcome
    ) -> bool:
        """Whether this exact report was recorded before (a resend after a lost ack)."""
        stored = await self.db.run(lambda tx: tx.get_work_request(lease.work_request_id))
        if stored is None or stored.lease != lease or stored.worker_name != session.worker_name:
            return False
        if outcome is lifecycle.Outcome.ABORTED:
            return stored.state is State.ABORTED
        return stored.state is State.COMPLETED and stored.result.value == outcome.value

    async def metadata_changed(self, session: Session, metadata: dict[str, Any]) -> None:
        """The worker sent new dynamic metadata."""
        live = self.workers[session.worker_name]
        updated = await self.db.run(
            lambda tx: _save_hello(
                tx, session.worker_name, metadata, live.worker.slots, self.clock()
            )
        )
        self.worker_changed(updated)

    def refresh_metadata(self, name: str) -> None:
        """Ask a connected worker to send its dynamic metadata again."""
        live = self.workers.get(name)
        if live is None:
            raise NotFoundError(f"no worker named {name!r}", reason="WORKER_NOT_FOUND")
        if live.session is None:
            raise FailedPreconditionError(
                f"worker {name} is not connected", reason="WORKER_OFFLINE"
            )
        live.session.send(messages.RefreshMetadata())

    def worker_changed(self, worker: Worker) -> None:
        """An operator or the worker changed a worker's record."""
        live = self.workers.setdefault(worker.name, LiveWorker(worker, view_of(worker)))
        live.worker, live.view = worker, view_of(worker)
        self.kick()


def _observe(before: WorkRequest, after: WorkRequest) -> None:
    """Count a committed transition in the metrics, in the request's trace."""
    if not metrics.measuring():
        return
    if after.state is State.RUNNING:
        metrics.started(after, tracing.context_of(after))
    elif after.state in FINAL_STATES:
        metrics.finished(after, tracing.context_of(after))
    elif after.state is State.PENDING and before.state in ACTIVE_STATES:
        metrics.requeues.add(1, {"taskyard.task": after.task_name}, tracing.context_of(before))


def _readable_view(worker: Worker) -> WorkerView:
    """The matching view of a stored worker, or, should its metadata be
    unusable, the view of the worker without it (logged once)."""
    try:
        return view_of(worker)
    except Exception as error:
        log.error("worker %s: stored metadata cannot be used (%r); set aside", worker.name, error)
        return view_of(dataclasses.replace(worker, dynamic_metadata={}, static_metadata={}))


def _save_hello(
    tx: StoreTransaction, name: str, metadata: dict[str, Any], slots: int, now: datetime
) -> Worker:
    """Store what a worker said about itself; return the updated record."""
    worker = tx.get_worker(name)
    if worker is None:
        raise NotFoundError(f"worker {name} is not registered", reason="UNKNOWN_WORKER")
    updated = dataclasses.replace(worker, dynamic_metadata=metadata, slots=slots, last_seen_at=now)
    tx.replace_worker(updated)
    return updated


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
