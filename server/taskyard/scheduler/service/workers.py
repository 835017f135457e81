"""Worker use cases: registration, sessions, and the operator's controls."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from taskyard.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    invalid,
)
from taskyard.scheduler.domain import Lease, Worker
from taskyard.scheduler.service import messages
from taskyard.scheduler.service.auth import digest
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.live import Session, WorkerCounts, count_workers
from taskyard.scheduler.store.port import StoreTransaction
from taskyard.tasks import Task

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MIN_TOKEN_LENGTH = 32


def parse_json_object(text: str, field_name: str) -> dict[str, Any]:
    """The JSON object in `text` (empty means `{}`); INVALID_ARGUMENT otherwise."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise invalid(field_name, f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise invalid(field_name, "must be a JSON object")
    return value


class Workers:
    """Registration, sessions and the operator's controls over workers."""

    def __init__(self, core: Core) -> None:
        self._core = core

    async def register(self, name: str, token: str, activation_token: str) -> Worker:
        """Register a worker, or return the one registered with this token."""
        core = self._core
        if len(token) < MIN_TOKEN_LENGTH:
            raise invalid("token", f"must be at least {MIN_TOKEN_LENGTH} characters")
        if not _NAME.match(name):
            raise invalid("name", "must be 1-100 letters, digits, '.', '_' or '-'")
        if core.credentials.token(token) is not None:
            raise AlreadyExistsError(
                "that secret is already in use; a worker generates a token of its own",
                reason="TOKEN_IN_USE",
            )
        now = core.clock()
        activation = None
        if activation_token:
            activation = core.credentials.activation_token(activation_token, now)
            if activation is None:
                raise PermissionDeniedError(
                    "the activation token is unknown, used, revoked or expired",
                    reason="ACTIVATION_TOKEN_INVALID",
                )

        def save(tx: StoreTransaction) -> Worker:
            worker = tx.get_worker_by_token(digest(token))
            if worker is None:
                worker = Worker(
                    name=_unique_name(tx, name, digest(token)),
                    token_sha256=digest(token),
                    registered_at=now,
                    enabled=core.auto_enable_workers,
                )
                tx.insert_worker(worker)
            if activation is not None:
                tx.replace_token(dataclasses.replace(activation, used_at=now))
                tx.announce("token", activation.id)
                worker = dataclasses.replace(worker, enabled=True)
                tx.replace_worker(worker)
            tx.announce("worker", worker.name)
            return worker

        worker = await core.db.run(save)
        if activation is not None:
            core.credentials.remember_token(dataclasses.replace(activation, used_at=now))
        core.credentials.remember_worker(worker)
        core.dispatcher.sessions.worker_changed(worker)
        return worker

    async def open_session(
        self,
        worker_name: str,
        metadata_json: str,
        slots: int,
        running: Sequence[Lease],
        prefetch: int = 0,
    ) -> Session:
        """Open the session of an enabled worker after its hello. A disabled
        worker's hello is kept (what it offers shows in `workers list` before
        an operator enables it), and the session refused. Whether it is
        registered and enabled is read from the store, with the hello: it
        may have been enabled through another scheduler a moment ago."""
        metadata = parse_json_object(metadata_json, "hello.metadata_json")
        if slots < 1:
            raise invalid("hello.slots", "must be at least 1")
        sessions = self._core.dispatcher.sessions
        return await sessions.open_session(worker_name, metadata, slots, running, prefetch)

    def list(self, connected_only: bool = False) -> list[tuple[Worker, bool, list[Lease]]]:
        """Every known worker of the farm with whether a scheduler holds its
        session (`scheduler`: which, by address and id) and what it runs; a
        worker connected here was last seen when it last spoke."""
        dispatcher = self._core.dispatcher
        now = self._core.clock()
        found = []
        for name in sorted(dispatcher.workers):
            live = dispatcher.workers[name]
            holder = self._core.schedulers.get(live.worker.scheduler)
            connected = live.connected
            if connected_only and not connected:
                continue
            leases = [w.lease for w in dispatcher.active.values() if w.worker_name == name]
            label = f"{holder.address} ({holder.id})" if holder is not None and connected else ""
            worker = dataclasses.replace(live.worker, scheduler=label)
            if live.session is not None:
                heard = now - timedelta(seconds=live.session.quiet_for())
                worker = dataclasses.replace(worker, last_seen_at=heard)
            found.append((worker, connected, leases))
        return found

    def counts(self) -> WorkerCounts:
        """The fleet at a glance: connected, enabled, busy, slots."""
        return count_workers(self._core.dispatcher.workers.values())

    async def change(self, name: str, **changes: Any) -> Worker:
        """Apply an operator's change to a worker's record."""

        def save(tx: StoreTransaction) -> Worker:
            worker = tx.get_worker(name, lock=True)
            if worker is None:
                raise NotFoundError(f"no worker named {name!r}", reason="WORKER_NOT_FOUND")
            updated = dataclasses.replace(worker, **changes)
            tx.replace_worker(updated)
            tx.announce("worker", name)
            return updated

        worker = await self._core.db.run(save)
        self._core.credentials.remember_worker(worker)
        self._core.dispatcher.sessions.worker_changed(worker)
        return worker

    async def remove(self, name: str) -> None:
        """Forget a worker that is gone: not connected, holding no lease. Safe
        against a concurrent removal or a session opening meanwhile."""
        dispatcher = self._core.dispatcher
        live = dispatcher.workers.get(name)
        if live is None:
            raise NotFoundError(f"no worker named {name!r}", reason="WORKER_NOT_FOUND")
        if live.connected or live.busy:
            raise FailedPreconditionError(
                f"worker {name} is connected or still holds work; disable it, stop it, "
                "and wait for its leases to expire",
                reason="WORKER_IN_USE",
            )
        removed = await self._core.db.run(lambda tx: _deleted(tx, name))
        live = dispatcher.workers.pop(name, None)
        if not removed or live is None:
            raise NotFoundError(f"no worker named {name!r}", reason="WORKER_NOT_FOUND")
        if live.session is not None:  # it connected while its record went
            live.session.close(messages.Closing(f"worker {name} was removed", 5.0))
        self._core.credentials.forget_worker(live.worker)
        self._core.feed.worker_changed()

    def refresh_metadata(self, name: str) -> None:
        """Ask a connected worker to send its dynamic metadata again."""
        self._core.dispatcher.sessions.refresh_metadata(name)

    async def set_static_metadata(self, name: str, metadata_json: str) -> Worker:
        """Replace a worker's static metadata."""
        metadata = parse_json_object(metadata_json, "static_metadata_json")
        return await self.change(name, static_metadata=metadata)

    async def set_task_filter(
        self, name: str, allowed: Sequence[str], denied: Sequence[str]
    ) -> Worker:
        """Replace a worker's allow and deny lists (registered task names only)."""
        for field_name, names in (("allowed_tasks", allowed), ("denied_tasks", denied)):
            unknown = sorted({n.lower() for n in names} - set(Task.task_names()))
            if unknown:
                known = ", ".join(Task.task_names())
                raise invalid(field_name, f"unknown tasks {unknown}; known: {known}")
        return await self.change(
            name,
            allowed_tasks=tuple(sorted({n.lower() for n in allowed})),
            denied_tasks=tuple(sorted({n.lower() for n in denied})),
        )

    async def reserve_for(self, name: str, tenants: Sequence[str]) -> Worker:
        """Reserve a worker for some existing tenants; none: every tenant."""
        wanted = sorted(set(tenants))
        known = set(self._core.dispatcher.tenants)
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise invalid("tenants", f"no tenants {unknown}; known: {', '.join(sorted(known))}")
        return await self.change(name, tenants=tuple(wanted))


def _unique_name(tx: StoreTransaction, wanted: str, token_sha256: str) -> str:
    """`wanted` if it is free, else `wanted-` and a few hex digits of the
    worker's token digest: two look-ups whatever the name, however many
    workers asked for it (probing `-2`, `-3`... cost one look-up each)."""
    if tx.get_worker(wanted) is None:
        return wanted
    name = f"{wanted[:90]}-{token_sha256[:8]}"
    if tx.get_worker(name) is not None:
        raise AlreadyExistsError(
            f"worker names {wanted!r} and {name!r} are taken; choose another name",
            reason="WORKER_NAME_TAKEN",
        )
    return name


def _deleted(tx: StoreTransaction, name: str) -> bool:
    """Forget a worker, and tell the other schedulers."""
    tx.announce("worker", name)
    return tx.delete_worker(name)
