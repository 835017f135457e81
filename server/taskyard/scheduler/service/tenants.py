"""Tenants: the teams sharing a farm, their weights and their quotas.

A tenant's weight and running ceiling live in the dispatcher (`shares`), which
matching reads; its pending ceiling is checked at submit. Both are counted
from the live state (`Dispatcher.pending` and `.active` count by tenant), so
they hold farm-wide and across restarts with no history kept.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator

from taskyard.errors import NotFoundError, ResourceExhaustedError, invalid
from taskyard.scheduler.domain import Tenant
from taskyard.scheduler.matching import Share
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.store.port import StoreTransaction

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MAX_WEIGHT = 1_000_000.0


def check_name(name: str, field: str = "tenant") -> None:
    """INVALID_ARGUMENT unless `name` can name a tenant."""
    if not NAME.fullmatch(name):
        raise invalid(
            field,
            "a tenant's name is 1 to 63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )


def share_of(tenant: Tenant) -> Share:
    """What matching needs of a tenant."""
    return Share(tenant.weight, tenant.max_running)


def ensure(tx: StoreTransaction, name: str) -> Tenant:
    """The tenant named `name`, made (weight 1, no quotas) if there is none."""
    found = tx.get_tenant(name)
    if found is None:
        found = Tenant(name)
        tx.put_tenant(found)
        tx.announce("tenant", name)
    return found


class Tenants:
    """Reading and setting tenants; checking their pending quota."""

    def __init__(self, core: Core) -> None:
        self._core = core
        #: Submissions admitted, not yet queued, by tenant.
        self._incoming: Counter[str] = Counter()

    def load(self, tenants: list[Tenant]) -> None:
        """Fill the dispatcher's shares from the store."""
        for tenant in tenants:
            self.remember(tenant)

    def remember(self, tenant: Tenant) -> None:
        """Record a created or changed tenant (here or on another scheduler)."""
        dispatcher = self._core.dispatcher
        dispatcher.tenants[tenant.name] = tenant
        dispatcher.shares[tenant.name] = share_of(tenant)
        dispatcher.fair.touch(tenant.name)
        dispatcher.kick()  # a raised ceiling or weight may free work

    async def list(self) -> list[tuple[Tenant, int, int]]:
        """Every tenant, with its requests running and pending now."""
        tenants = await self._core.db.run(lambda tx: tx.list_tenants())
        running = self._core.dispatcher.running()
        pending = self._core.dispatcher.pending.counts
        return [(t, running[t.name], pending[t.name]) for t in tenants]

    async def set(
        self, name: str, weight: float, max_running: int | None, max_pending: int | None
    ) -> tuple[Tenant, int, int]:
        """Create a tenant or replace its weight and quotas."""
        check_name(name, "name")
        if not 0 < weight <= MAX_WEIGHT:
            raise invalid("weight", f"must be more than 0 and at most {MAX_WEIGHT:,.0f}")
        tenant = Tenant(name, weight, max_running, max_pending)

        def save(tx: StoreTransaction) -> None:
            tx.put_tenant(tenant)
            tx.announce("tenant", name)

        await self._core.db.run(save)
        self.remember(tenant)
        dispatcher = self._core.dispatcher
        return tenant, dispatcher.running()[name], dispatcher.pending.counts[name]

    async def named(self, name: str) -> Tenant:
        """An existing tenant; NOT_FOUND otherwise."""
        found = await self._core.db.run(lambda tx: tx.get_tenant(name))
        if found is None:
            raise NotFoundError(f"no tenant {name!r}", reason="TENANT_NOT_FOUND")
        return found

    @contextlib.contextmanager
    def admitting(self, name: str, count: int = 1) -> Iterator[None]:
        """Hold room for `count` more pending requests of tenant `name` while
        they are stored; NOT_FOUND for no such tenant, RESOURCE_EXHAUSTED
        past its pending ceiling (blocked requests count: they will be)."""
        tenant = self._core.dispatcher.tenants.get(name)
        if tenant is None:
            raise NotFoundError(f"no tenant {name!r}", reason="TENANT_NOT_FOUND")
        ceiling = tenant.max_pending
        pending = self._core.dispatcher.pending.counts[name] + self._incoming[name]
        if ceiling is not None and pending + count > ceiling:
            raise ResourceExhaustedError(
                f"tenant {name} has {pending} requests pending, its max_pending is "
                f"{ceiling}: wait for some to start, or ask an operator to raise it",
                reason="TENANT_MAX_PENDING",
                metadata={"tenant": name, "max_pending": str(ceiling)},
            )
        self._incoming[name] += count
        try:
            yield
        finally:
            self._incoming[name] -= count
