"""The worker side of dispatching: sessions opening and closing, leases
outliving them for a grace period, and what workers report.

The dispatcher owns one (`Dispatcher.sessions`) and shares with it the live
state (workers, active requests) and what it needs of the dispatcher:
committing a change, asking for a matching pass, running a side job.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from taskyard.errors import FailedPreconditionError, NotFoundError, PermissionDeniedError
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import Lease, State, Worker, WorkError, WorkRequest
from taskyard.scheduler.service import messages
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.service.feed import ChangeFeed
from taskyard.scheduler.service.live import ByTenant, LiveWorker, Session, view_of
from taskyard.scheduler.service.observers import Observer
from taskyard.scheduler.store.port import StoreTransaction

log = logging.getLogger("taskyard.scheduler.service.dispatch")

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


class Commit(Protocol):
    """Compare-and-set a request's change in the store, then in the live state."""

    async def __call__(
        self,
        before: WorkRequest,
        after: WorkRequest,
        via: WorkRequest | None = None,
        why: WorkError | None = None,
        guard: Callable[[StoreTransaction], None] | None = None,
    ) -> bool: ...


@dataclass
class Scheduling:
    """What sessions share with the dispatcher that owns them."""

    db: GroupCommitter
    feed: ChangeFeed
    clock: Clock
    settings: Settings
    workers: dict[str, LiveWorker]
    active: ByTenant
    observers: list[Observer]
    commit: Commit
    #: This scheduler's id among those sharing the database.
    scheduler_id: str
    #: Ask for a matching pass soon.
    kick: Callable[[], None]
    #: Run a side job, its failure logged.
    spawn: Callable[[Coroutine[Any, Any, Any]], None]
    #: Count an active request as ended for fair share while its end is
    #: being committed (its slot was freed at once).
    releasing: Callable[[str], AbstractContextManager[None]]


class WorkerSessions:
    """Sessions, leases and reports, over the dispatcher's live state."""

    def __init__(self, scheduling: Scheduling) -> None:
        self.db = scheduling.db
        self.feed = scheduling.feed
        self.clock = scheduling.clock
        self.settings = scheduling.settings
        self.workers = scheduling.workers
        self.active = scheduling.active
        self.observers = scheduling.observers
        self.commit = scheduling.commit
        self.scheduler_id = scheduling.scheduler_id
        self.kick = scheduling.kick
        self._spawn = scheduling.spawn
        self._releasing = scheduling.releasing

    # -- Sessions -----------------------------------------------------------

    async def open_session(
        self,
        name: str,
        metadata: dict[str, Any],
        slots: int,
        running: Iterable[Lease],
        prefetch: int = 0,
    ) -> Session:
        """Keep a worker's hello; if it is enabled, open its session and
        reconcile what it holds (PERMISSION_DENIED if it is not). `prefetch`:
        how many assignments it queues beyond its slots."""
        hello = Hello(metadata, slots, self.clock(), self.scheduler_id)
        updated = await self.db.run(lambda tx: _save_hello(tx, name, hello))
        live = self.workers.setdefault(updated.name, LiveWorker(updated, view_of(updated)))
        live.worker, live.view = updated, view_of(updated)
        if not updated.enabled:
            raise PermissionDeniedError(
                f"worker {name} is disabled; an operator must run: taskyard workers enable {name}",
                reason="WORKER_DISABLED",
                metadata={"worker_name": name},
            )
        if live.session is not None:
            live.session.close(messages.Closing("replaced by a newer session", 0.0))
        silence = self.settings.heartbeat_interval * self.settings.missed_heartbeats
        session = Session(updated.name, self._silent, silence)
        session.prefetch = prefetch
        live.session = session
        session.send(
            messages.Welcome(
                updated.name, self.settings.heartbeat_interval, self.settings.lease_grace
            )
        )
        await self._reconcile(live, {lease.work_request_id: lease for lease in running})
        self.feed.worker_changed()
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
            gone = WorkError("worker-lost", "the worker came back without it")
            lost = lifecycle.requeue_or_fail(work_request, self.clock(), gone.reason, gone.message)
            await self.commit(work_request, lost, why=gone)
        for lease in reported.values():
            if live.session is not None:
                why = "the scheduler no longer assigns this attempt to you"
                live.session.send(messages.AbortWork(lease, messages.AbortReason.LEASE_LOST, why))

    def close_session(self, session: Session) -> None:
        """The session's stream ended: its leases survive for the grace period
        (the maintenance holder expires them: `maintenance.py`), and the
        store says that no scheduler holds the worker's session now."""
        session.close()
        live = self.workers.get(session.worker_name)
        if live is None or live.session is not session:
            return
        live.session = None
        self.feed.worker_changed()
        self._spawn(self._went_away(session.worker_name))

    async def _went_away(self, name: str) -> None:
        now = self.clock()

        def save(tx: StoreTransaction) -> Worker | None:
            worker = tx.get_worker(name, lock=True)
            if worker is None or worker.scheduler != self.scheduler_id:
                return None  # gone, or back on another scheduler already
            updated = dataclasses.replace(worker, scheduler="", last_seen_at=now)
            tx.replace_worker(updated)
            tx.announce("worker", name)
            return updated

        updated = await self.db.run(save)
        live = self.workers.get(name)
        if updated is not None and live is not None and live.session is None:
            live.worker = updated
            self.feed.worker_changed()

    def _silent(self, session: Session) -> None:
        log.warning("worker %s sent nothing for too long; closing its session", session.worker_name)
        session.close()

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
        why = WorkError("declined", f"{session.worker_name} gave it back: {reason}")
        if not await self.commit(current, lifecycle.decline(current, self.clock()), why=why):
            raise StaleLeaseError(f"work request {lease.work_request_id} changed meanwhile")
        log.info("%s gave back %s: %s", session.worker_name, current.id, reason)
        for observer in self.observers:
            observer.declined(current, session.worker_name, reason)
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
        ending: lifecycle.Ending,
        *,
        started: bool = False,
    ) -> None:
        """The worker finished an assignment (and, with `started`, reported its
        start in the same message). A resent report of a recorded result is
        accepted again (its first acknowledgement may have been lost)."""
        with self._releasing(lease.work_request_id):
            live = self.workers.get(session.worker_name)
            if live is not None:
                live.busy.discard(lease.work_request_id)
                self.kick()  # the slot is free now: matching need not wait for the commit
            await self._complete(session, lease, ending, started)

    async def _complete(
        self, session: Session, lease: Lease, ending: lifecycle.Ending, started: bool
    ) -> None:
        try:
            current = self._current(session, lease)
        except StaleLeaseError:
            if await self._already_recorded(session, lease, ending.outcome):
                return
            raise
        now = self.clock()
        running = None
        if started and current.state is State.ASSIGNED:
            running = lifecycle.start(current, now)
        finished = lifecycle.finish(running or current, ending, now)
        if not await self.commit(current, finished, via=running):
            # The same report, sent again on a new session while the old
            # session's copy was being committed, got there first: recorded.
            if await self._already_recorded(session, lease, ending.outcome):
                return
            raise StaleLeaseError(f"work request {lease.work_request_id} changed meanwhile")
        for observer in self.observers:
            observer.completed(finished, ending.outcome)

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
        live = self.workers.get(session.worker_name)
        if live is None:
            return  # removed meanwhile: its session is closing
        hello = Hello(metadata, live.worker.slots, self.clock(), self.scheduler_id)
        updated = await self.db.run(lambda tx: _save_hello(tx, session.worker_name, hello))
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
        self.feed.worker_changed()
        self.kick()


@dataclass(frozen=True)
class Hello:
    """What a worker says of itself, and where and when it said it."""

    metadata: dict[str, Any]
    slots: int
    at: datetime
    #: The scheduler that holds its session now.
    scheduler: str


def _save_hello(tx: StoreTransaction, name: str, hello: Hello) -> Worker:
    """Store what a worker said about itself; return the updated record."""
    worker = tx.get_worker(name, lock=True)
    if worker is None:
        raise NotFoundError(f"worker {name} is not registered", reason="UNKNOWN_WORKER")
    updated = dataclasses.replace(
        worker,
        dynamic_metadata=hello.metadata,
        slots=hello.slots,
        last_seen_at=hello.at,
        scheduler=hello.scheduler,
    )
    tx.replace_worker(updated)
    tx.announce("worker", name)
    return updated
