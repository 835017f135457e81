"""What the SQL adapter needs around SQLAlchemy: SQLite set up for durable
group commits, database errors read as a full disk, and rows read back
without letting one unreadable row break a listing or a start."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from taskyard.logs import RateLimitedLog

T = TypeVar("T")
_unreadable = RateLimitedLog(logging.getLogger("taskyard.scheduler.store.sql"), interval=3600.0)


def sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT: take it over (the
    # SQLAlchemy recipe) and begin transactions ourselves in `sqlite_begin`.
    dbapi_connection.isolation_level = None
    # WAL lets readers run beside the writer; FULL makes every commit durable.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


#: SQLite's result code for a full disk or database (SQLITE_FULL), and
#: PostgreSQL's SQLSTATE `disk_full`.
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def disk_full(error: DBAPIError) -> bool:
    """Whether a database error says the disk is full."""
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return True
    return getattr(original, "sqlstate", None) == _PG_DISK_FULL or (
        "No space left on device" in str(original)
    )


#: SQLSTATEs that say the database is away or no longer takes writes here:
#: class 08 (connection exceptions), the server shutting down or starting
#: (57P01-57P03), a read-only transaction (a primary demoted to standby).
_AWAY_CLASSES = ("08",)
_AWAY_STATES = {"57P01", "57P02", "57P03", "25006"}


def unreachable(error: DBAPIError) -> bool:
    """Whether a database error says the database is away (not a mistake)."""
    if error.connection_invalidated:
        return True
    state = getattr(error.orig, "sqlstate", None) or ""
    return state.startswith(_AWAY_CLASSES) or state in _AWAY_STATES


def sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def readable(convert: Callable[[Any], T], found: Iterable[Any]) -> list[T]:
    """The rows of `found` as domain objects; a row that cannot be read
    (written by something else, or damaged) is logged and set aside, so it
    breaks neither a listing nor a start."""
    readable = []
    for row in found:
        item = readable_one(convert, row)
        if item is not None:
            readable.append(item)
    return readable


def readable_one(convert: Callable[[Any], T], row: Any) -> T | None:
    if row is None:
        return None
    try:
        return convert(row)
    except Exception as error:
        key = next(iter(row.values()), "?")
        _unreadable.warning(str(key), "set aside an unreadable row %s: %r", key, error)
        return None
