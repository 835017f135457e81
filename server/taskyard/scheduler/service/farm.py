"""Several schedulers on one database: what each learns of the others.

Each scheduler keeps the live state in memory (the queue, what runs where,
workers, tokens), so that matching and authenticating cost no round trip.
What another scheduler commits reaches it as announcements
(`Store.listen`, PostgreSQL's LISTEN/NOTIFY): it reads back what each one
names, those that arrive together in one transaction, and applies it as if
it had committed it itself: a request queued or queued again joins its
queue, one assigned elsewhere leaves it, watchers and pages hear of it; a
worker or token changed updates what matches and authenticates. After
`resync` (its listener reconnected: announcements may have been missed) it
reads all of it again. Nothing is learnt by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from taskyard.errors import UnavailableError
from taskyard.scheduler.domain import (
    ACTIVE_STATES,
    Lease,
    State,
    Tenant,
    Token,
    Worker,
    WorkRequest,
)
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.store.port import Store, StoreTransaction

log = logging.getLogger(__name__)
LIVE_STATES = frozenset({State.PENDING, *ACTIVE_STATES})


@dataclass
class _Read:
    """What a batch of announcements named, as the store has it now."""

    requests: dict[str, WorkRequest | None] = field(default_factory=dict)
    workers: dict[str, Worker | None] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    tenants: list[Tenant] = field(default_factory=list)
    #: After a resync: every worker, so that those gone are forgotten.
    all_workers: list[Worker] | None = None


class Farm:
    """Keeps one scheduler's live state in step with the others'."""

    def __init__(self, core: Core, store: Store) -> None:
        self._core = core
        self._store = store
        #: Told of each attempt whose log another scheduler appended to.
        self.on_log: Callable[[Lease], None] = lambda lease: None
        #: Told of each tenant another scheduler created or changed.
        self.on_tenant: Callable[[Tenant], None] = lambda tenant: None
        self._heard: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._applying: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Listen (in the store's thread), apply here."""
        loop = asyncio.get_running_loop()
        self._applying = loop.create_task(self._apply_forever())

        def heard(kind: str, key: str) -> None:  # in the store's listening thread
            loop.call_soon_threadsafe(self._hear, kind, key)

        self._unlisten = self._store.listen(heard)

    async def stop(self) -> None:
        await asyncio.to_thread(self._unlisten)
        if self._applying is not None:
            self._applying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._applying

    def _hear(self, kind: str, key: str) -> None:
        if kind == "log":  # nothing to read: the log is in the shared blob directory
            work_request_id, _, attempt = key.partition(" ")
            if attempt.isdigit():
                self.on_log(Lease(work_request_id, int(attempt)))
            return
        self._heard.add((kind, key))
        self._wake.set()

    async def announce(self, kind: str, key: str) -> None:
        """Tell the other schedulers, if any, of a change that is not in the
        store (a log that grew)."""
        if self._store.shared:
            await self._core.db.run(lambda tx: tx.announce(kind, key))

    async def _apply_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            heard, self._heard = self._heard, set()
            try:
                read = await self._core.db.run(functools.partial(self._read, heard=heard))
            except Exception as error:
                why = "could not read what other schedulers changed; reading all again"
                if isinstance(error, UnavailableError):  # the database is away: a line
                    log.warning("%s: %s", why, error.message)
                else:
                    log.exception("%s", why)
                self._hear("resync", "")
                await asyncio.sleep(1.0)
                continue
            self._apply(read)

    def _read(self, tx: StoreTransaction, *, heard: set[tuple[str, str]]) -> _Read:
        read = _Read()
        if ("resync", "") in heard:
            live = tx.work_requests_in_states(LIVE_STATES)
            read.requests = {w.id: w for w in live}
            local = [*self._core.dispatcher.pending, *self._core.dispatcher.active]
            for gone in set(local) - set(read.requests):  # ended meanwhile, or deleted
                read.requests[gone] = tx.get_work_request(gone)
            read.all_workers = tx.list_workers()
            read.tokens = tx.list_tokens()
            read.tenants = tx.list_tenants()
        for kind, key in heard:
            if kind == "request":
                read.requests[key] = tx.get_work_request(key)
            elif kind == "worker":
                read.workers[key] = tx.get_worker(key)
            elif kind == "token":
                read.tokens += [t for t in [tx.get_token(key)] if t is not None]
            elif kind == "tenant":
                read.tenants += [t for t in [tx.get_tenant(key)] if t is not None]
        return read

    def _apply(self, read: _Read) -> None:
        core = self._core
        for token in read.tokens:
            core.credentials.remember_token(token)
        for tenant in read.tenants:
            self.on_tenant(tenant)
        workers: dict[str, Worker | None] = dict(read.workers)
        if read.all_workers is not None:
            workers.update({w.name: w for w in read.all_workers})
            known = {w.name for w in read.all_workers}
            workers.update({name: None for name in core.dispatcher.workers if name not in known})
        for name, worker in workers.items():
            self._apply_worker(name, worker)
        for work_request_id, work_request in read.requests.items():
            core.dispatcher.absorb(work_request_id, work_request)

    def _apply_worker(self, name: str, worker: Worker | None) -> None:
        core = self._core
        if worker is None:
            live = core.dispatcher.workers.get(name)
            if live is not None:
                core.credentials.forget_worker(live.worker)
                core.dispatcher.forget_worker(name)
            return
        core.credentials.remember_worker(worker)
        core.dispatcher.sessions.worker_changed(worker)
