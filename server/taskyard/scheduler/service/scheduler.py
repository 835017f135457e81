"""The scheduler service: builds the core, loads state, starts and stops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from taskyard.scheduler import lifecycle
from taskyard.scheduler.blobs.logs import LogFiles
from taskyard.scheduler.blobs.port import BlobStore
from taskyard.scheduler.domain import (
    ACTIVE_STATES,
    Result,
    SchedulerRecord,
    State,
    Tenant,
    Token,
    Worker,
    WorkRequest,
)
from taskyard.scheduler.service.artifact_rules import Limits
from taskyard.scheduler.service.artifacts import Artifacts
from taskyard.scheduler.service.auth import Credentials, Principal
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.dispatch import Dispatcher, Guard
from taskyard.scheduler.service.farm import Farm
from taskyard.scheduler.service.feed import ChangeFeed
from taskyard.scheduler.service.ids import IdFactory, SortableIds
from taskyard.scheduler.service.maintenance import FencedOut, Maintenance
from taskyard.scheduler.service.observers import Observer
from taskyard.scheduler.service.retention import Pruned, Retention
from taskyard.scheduler.service.sessions import Settings
from taskyard.scheduler.service.task_logs import DEFAULT_CAP, TaskLogs
from taskyard.scheduler.service.tenants import Tenants
from taskyard.scheduler.service.tokens import Tokens
from taskyard.scheduler.service.work_requests import WorkRequests
from taskyard.scheduler.service.workers import Workers
from taskyard.scheduler.store.port import Store, StoreTransaction

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class Scheduler:
    """The scheduler's use cases over one store. Create, `await start()`, `await stop()`."""

    def __init__(
        self,
        store: Store,
        *,
        settings: Settings | None = None,
        auto_enable_workers: bool = False,
        clock: Callable[[], datetime] = utc_now,
        new_id: IdFactory | None = None,
        blobs: BlobStore,
        limits: Limits | None = None,
        logs: LogFiles,
        log_cap: int = DEFAULT_CAP,
        keep_seconds: float = 0.0,
        scheduler_id: str = "local",
        lease_ttl: float = 5.0,
    ) -> None:
        self.store = store
        settings = settings or Settings()
        db = GroupCommitter(store)
        feed = ChangeFeed()
        self.core = Core(
            db=db,
            feed=feed,
            dispatcher=Dispatcher(db, feed, clock, settings, scheduler_id),
            credentials=Credentials(),
            clock=clock,
            new_id=new_id or SortableIds(""),
            settings=settings,
            auto_enable_workers=auto_enable_workers,
        )
        self.tenants = Tenants(self.core)
        self.work_requests = WorkRequests(self.core, self.tenants)
        self.workers = Workers(self.core)
        self.tokens = Tokens(self.core, self.tenants)
        self.artifacts = Artifacts(self.core, blobs, limits or Limits())
        self.logs = TaskLogs(self.core, logs, log_cap)
        self.retention = Retention(self.core, blobs, logs)
        #: In step with the other schedulers of a shared database.
        self.farm = Farm(self.core, store)
        self.farm.on_tenant = self.tenants.remember
        if store.shared:
            self.logs.announce = self.farm.announce
            self.farm.on_log = self.logs.heard
        started = clock()
        #: This scheduler as the others see it (its address once it listens).
        self.record = SchedulerRecord(scheduler_id, "", "", started, started)
        self.maintenance = Maintenance(self.core, self.record, lease_ttl, shared=store.shared)
        self._keep = keep_seconds
        self._sweeper: asyncio.TimerHandle | None = None
        self._next_prune = 0.0
        self._sweeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Migrate the store, load the live state and start matching."""
        await asyncio.to_thread(self.store.migrate)

        def load(
            tx: StoreTransaction,
        ) -> tuple[list[Tenant], list[Token], list[Worker], list[WorkRequest]]:
            live_states = {State.PENDING, *ACTIVE_STATES}
            return (
                tx.list_tenants(),
                tx.list_tokens(),
                tx.list_workers(),
                tx.work_requests_in_states(live_states),
            )

        tenants, tokens, workers, requests = await self.core.db.run(load)
        self.tenants.load(tenants)
        self.core.credentials.load(tokens, workers)
        unrunnable = self.core.dispatcher.load(workers, requests)
        for work_request, error in unrunnable:
            failed = lifecycle.complete(work_request, Result.ERROR, self.core.clock(), error=error)
            await self.core.dispatcher.commit(work_request, failed)
        self.core.dispatcher.start()
        self.farm.start()
        await self.maintenance.renew()  # alone on its database: it leads from the start
        self.maintenance.start()
        await self._sweep()

    async def _sweep(self) -> None:
        """Remove stale partial uploads (and, with a kept age, what is
        finished and older) now, and again and again: on the scheduler that
        runs maintenance, each delete fenced by its lease."""
        if self.maintenance.leading:
            await self._maintain(self.maintenance.guard)
        loop = asyncio.get_running_loop()
        # Often enough that an upload goes soon after its max age.
        every = max(10.0, min(3600.0, self.artifacts.limits.partial_max_age / 4))
        self._sweeper = loop.call_later(every, self._sweep_later)

    async def _maintain(self, guard: Guard) -> None:
        try:
            removed = await self.artifacts.sweep(guard)
            if removed:
                log.info("removed %d abandoned artifact upload(s)", removed)
            if self._keep > 0 and time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + 3600
                pruned = await self.retention.prune(self._keep, guard)
                if pruned != Pruned():
                    log.info("pruned what ended over %.0f days ago: %s", self._keep / 86400, pruned)
        except FencedOut as refused:
            log.warning("%s", refused.message)

    def _sweep_later(self) -> None:
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep())

    def listening(self, address: str, page: str = "") -> None:
        """Where this scheduler serves (the others show it by its workers)."""
        self.maintenance.listening(address, page)

    def observe_with(self, observer: Observer, *, submissions: bool = False) -> None:
        """Tell `observer` of what the dispatcher does (and, with
        `submissions`, let it follow each submission: one observer may).
        Tracing and metrics watch the scheduler this way, not from inside."""
        self.core.dispatcher.observers.append(observer)
        if submissions:
            self.work_requests.observer = observer

    def authenticate(self, bearer: str | None) -> Principal:
        """The principal behind a bearer secret."""
        return self.core.credentials.authenticate(bearer, self.core.clock())

    async def stop(self) -> None:
        """End watches and worker sessions (telling workers), stop timers."""
        self.core.feed.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.maintenance.stop()
        await self.farm.stop()
        await self.core.dispatcher.stop()

    def close(self) -> None:
        """Release the store once nothing uses it any more."""
        self.core.db.close()
        self.store.close()
