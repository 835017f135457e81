"""Maintenance, run by one scheduler at a time, elected by a lease.

The lease (the `leases` row `maintenance`) is held by one scheduler and
renewed every third of its TTL, on the store's clock; once it runs out,
another takes it with the next term: within the TTL and one renewal of its
holder's end. Each write maintenance makes first checks, in its own
transaction, that this scheduler still holds the lease in its term (which
also keeps a taker waiting until that transaction ends): a holder paused
past its lease and resumed has its writes refused, said and counted
(`refused`, and the metric `taskyard.maintenance.writes_refused`), and
learns of its loss at its next renewal. At each renewal every scheduler also
beats its own row: how the others know it is alive.

Under the lease run:
- the expiry of the leases of workers gone away: a worker that holds work
  and whose session no living scheduler holds (it ended, or the scheduler
  holding it stopped beating) loses that work once it has been away for the
  lease grace: requeued, or failed past its attempts;
- execution timeouts;
- the scheduler's sweep (retention, abandoned uploads: `Scheduler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from taskyard.errors import FailedPreconditionError, UnavailableError
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import (
    ACTIVE_STATES,
    Lease,
    Result,
    SchedulerRecord,
    WorkError,
    WorkRequest,
)
from taskyard.scheduler.service import messages, metrics
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.dispatch import effective_timeout
from taskyard.scheduler.service.live import LiveWorker
from taskyard.scheduler.store.port import StoreTransaction

log = logging.getLogger(__name__)
LEASE = "maintenance"


class FencedOut(FailedPreconditionError):
    """A maintenance write by a scheduler that no longer holds the lease."""

    default_reason = "NOT_LEADER"


class Maintenance:
    """The lease, this scheduler's heartbeat, and what runs under the lease."""

    def __init__(
        self, core: Core, me: SchedulerRecord, ttl: float, *, shared: bool = False
    ) -> None:
        self._core = core
        self._me = me
        self._ttl = ttl
        #: Whether other schedulers may share the database (then changes of
        #: leader are worth a line).
        self._say = log.info if shared else log.debug
        #: The term this scheduler holds the lease in; None while another does.
        self.term: int | None = None
        #: When it took the lease: no worker is counted away from before then
        #: (a scheduler that has just started, or taken over, has not yet had
        #: the time to hear from them).
        self._leading_since: datetime | None = None
        #: Maintenance writes refused because the lease had gone meanwhile.
        self.refused = 0
        self._alive: dict[str, datetime] = {}
        self._timeouts: dict[str, asyncio.TimerHandle] = {}
        self._away: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewing: asyncio.Task[None] | None = None
        self._unlisten = core.feed.listen(self._changed)

    @property
    def leading(self) -> bool:
        return self.term is not None

    def listening(self, address: str, page: str) -> None:
        """Where this scheduler serves, said at its next beat."""
        self._me = dataclasses.replace(self._me, address=address, page=page)

    def start(self) -> None:
        metrics.observe_leading(lambda: self.leading)
        self._renewing = asyncio.get_running_loop().create_task(self._renew_forever())

    async def stop(self) -> None:
        self._unlisten()
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        self._lost()
        for task in list(self._tasks):
            task.cancel()

    # -- The lease ------------------------------------------------------------

    async def _renew_forever(self) -> None:
        while True:
            try:
                await self.renew()
            except UnavailableError as error:  # the database is away: a line, not a traceback
                log.warning("could not renew the maintenance lease: %s", error.message)
            except Exception:
                log.exception("could not renew the maintenance lease")
            await asyncio.sleep(self._ttl / 3)

    async def renew(self) -> None:
        """Beat, hold (or try to take) the lease, and look for work gone away."""

        def renewal(tx: StoreTransaction) -> tuple[int | None, list[SchedulerRecord], datetime]:
            tx.beat(self._me)
            return tx.take_lease(LEASE, self._me.id, self._ttl), tx.schedulers(), tx.now()

        term, schedulers, now = await self._core.db.run(renewal)
        alive = [s for s in schedulers if now - s.seen_at <= timedelta(seconds=self._ttl)]
        self._alive = {s.id: s.seen_at for s in alive}
        self._core.schedulers.clear()
        self._core.schedulers.update({s.id: s for s in alive})
        self._note_where_workers_are()
        if term is None:
            if self.term is not None:
                log.warning("another scheduler holds the maintenance lease now")
                self._lost()
            return
        if self.term != term:
            self._say("this scheduler runs maintenance now (term %d)", term)
            self.term = term
            self._leading_since = now
            self._gained()
        self._look_for_workers_away(now)

    def _note_where_workers_are(self) -> None:
        """Which workers another living scheduler holds the session of."""
        changed = False
        for live in self._core.dispatcher.workers.values():
            holder = live.worker.scheduler
            elsewhere = bool(holder) and holder != self._me.id and holder in self._alive
            changed |= elsewhere != live.elsewhere
            live.elsewhere = elsewhere
        if changed:
            self._core.feed.worker_changed()

    def guard(self, tx: StoreTransaction) -> None:
        """Refuse a maintenance write unless this scheduler holds the lease
        in its term (raises FencedOut, counted)."""
        term = self.term
        if term is None or not tx.holds_lease(LEASE, self._me.id, term):
            self.refused += 1
            metrics.fenced_writes.add(1)
            raise FencedOut(f"maintenance lease lost (term {term}): write refused")

    def _gained(self) -> None:
        for work_request in self._core.dispatcher.active.values():
            self._arm_timeout(work_request)

    def _lost(self) -> None:
        self.term = None
        for timer in [*self._timeouts.values(), *self._away.values()]:
            timer.cancel()
        self._timeouts.clear()
        self._away.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_said_fenced)

    # -- Changes --------------------------------------------------------------

    def _changed(self, change: WorkRequest | None) -> None:
        """Every committed change, here or elsewhere (None: a worker changed)."""
        if not self.leading:
            return
        if change is None:
            self._look_for_workers_away(None)
        elif change.state in ACTIVE_STATES:
            self._arm_timeout(change)
        else:
            timer = self._timeouts.pop(change.id, None)
            if timer is not None:
                timer.cancel()

    # -- Execution timeouts ---------------------------------------------------

    def _arm_timeout(self, work_request: WorkRequest) -> None:
        seconds = effective_timeout(work_request)
        # From its start: an assignment a worker queued (prefetch) waits
        # for a slot first.
        since = work_request.started_at or work_request.assigned_at
        if seconds is None or since is None:
            return
        if work_request.id in self._timeouts:
            self._timeouts[work_request.id].cancel()
        elapsed = (self._core.clock() - since).total_seconds()
        lease = work_request.lease
        self._timeouts[work_request.id] = asyncio.get_running_loop().call_later(
            max(0.0, seconds - elapsed), lambda: self._spawn(self._time_out(lease, seconds))
        )

    async def _time_out(self, lease: Lease, seconds: float) -> None:
        dispatcher = self._core.dispatcher
        current = dispatcher.active.get(lease.work_request_id)
        if current is None or current.lease != lease:
            return
        error = WorkError("timeout", f"the task ran longer than its {seconds:g}s timeout")
        finished = lifecycle.complete(current, Result.ERROR, self._core.clock(), error=error)
        if await dispatcher.commit(current, finished, guard=self.guard):
            dispatcher.send_abort(current, messages.AbortReason.TIMEOUT, error.message)

    # -- Workers gone away ----------------------------------------------------

    def _away_since(self, live: LiveWorker) -> datetime | None:
        """Since when no living scheduler has held the worker's session (None:
        one does), counted at the earliest from when this one took the lease
        (a worker whose scheduler died is given the whole grace to come back)."""
        if live.session is not None:
            return None
        holder = live.worker.scheduler
        if holder and holder in self._alive:
            return None
        since = live.worker.last_seen_at
        if since is None or self._leading_since is None:
            return since
        return max(since, self._leading_since)

    def _look_for_workers_away(self, now: datetime | None) -> None:
        """Expire, or time the expiry of, the work of every worker away."""
        if not self.leading:
            return
        now = now or self._core.clock()
        grace = timedelta(seconds=self._core.settings.lease_grace)
        for name, live in self._core.dispatcher.workers.items():
            since = self._away_since(live) if live.busy else None
            timer = self._away.pop(name, None)
            if timer is not None:
                timer.cancel()
            if since is None:
                continue
            wait = max(0.0, (since + grace - now).total_seconds())
            self._away[name] = asyncio.get_running_loop().call_later(
                wait,
                lambda name=name: self._spawn(self._expire(name)),  # type: ignore[misc]
            )

    async def _expire(self, worker_name: str) -> None:
        dispatcher = self._core.dispatcher
        self._away.pop(worker_name, None)
        live = dispatcher.workers.get(worker_name)
        if live is None or self._away_since(live) is None:
            return  # back meanwhile
        held = [w for w in dispatcher.active.values() if w.worker_name == worker_name]
        for work_request in held:
            why = WorkError("worker-lost", f"worker {worker_name} was lost")
            lost = lifecycle.requeue_or_fail(
                work_request, self._core.clock(), why.reason, why.message
            )
            log.warning("lease of %s on %s expired: %s", work_request.id, worker_name, lost.state)
            if await dispatcher.commit(work_request, lost, why=why, guard=self.guard):
                for observer in dispatcher.observers:
                    observer.lease_expired(work_request, worker_name)


def _said_fenced(task: asyncio.Task[None]) -> None:
    """A refused maintenance write is said once; anything else is a bug."""
    if task.cancelled() or task.exception() is None:
        return
    error = task.exception()
    if isinstance(error, FencedOut):
        log.warning("%s", error.message)
    else:
        log.error("maintenance failed", exc_info=error)
