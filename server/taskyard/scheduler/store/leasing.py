"""Leases and scheduler heartbeats in SQL (the SQL store's part of them).

A lease row names its holder, its term and when it expires, on the
database's clock. Taking or renewing it locks the row; a holder checking
that it still holds it (`holds`) takes a share lock that lasts until its
transaction ends, so a taker waits for that transaction, and a former
holder's check after a takeover fails: its writes are refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from taskyard.scheduler.domain import SchedulerRecord
from taskyard.scheduler.store.schema import leases, schedulers

_L = leases.c
_S = schedulers.c


def take(db: Connection, now: datetime, name: str, holder: str, ttl: float) -> int | None:
    """Renew or take the lease; the term held, or None."""
    expires = now + timedelta(seconds=ttl)
    row = db.execute(select(leases).where(_L.name == name).with_for_update()).mappings().first()
    if row is None:
        db.execute(insert(leases).values(name=name, holder=holder, term=1, expires_at=expires))
        return 1
    if row["holder"] == holder and row["expires_at"] >= now:
        db.execute(update(leases).where(_L.name == name).values(expires_at=expires))
        return int(row["term"])
    if row["expires_at"] < now:
        term = int(row["term"]) + 1
        db.execute(
            update(leases)
            .where(_L.name == name)
            .values(holder=holder, term=term, expires_at=expires)
        )
        return term
    return None


def holds(db: Connection, now: datetime, name: str, holder: str, term: int) -> bool:
    """Whether `holder` holds the lease in `term`, locked until the transaction ends."""
    query = select(leases).where(_L.name == name).with_for_update(read=True)
    row = db.execute(query).mappings().first()
    return (
        row is not None
        and row["holder"] == holder
        and int(row["term"]) == term
        and row["expires_at"] >= now
    )


def beat(db: Connection, record: SchedulerRecord) -> None:
    """Insert or refresh a scheduler's row."""
    values = {
        "address": record.address,
        "page": record.page,
        "started_at": record.started_at,
        "seen_at": record.seen_at,
    }
    if db.execute(update(schedulers).where(_S.id == record.id).values(values)).rowcount == 0:
        db.execute(insert(schedulers).values(id=record.id, **values))


def all_schedulers(db: Connection) -> list[SchedulerRecord]:
    """Every scheduler's row."""
    found = db.execute(select(schedulers).order_by(_S.id)).mappings()
    return [SchedulerRecord(**dict(row)) for row in found]
