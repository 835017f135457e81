"""Schedulers sharing a PostgreSQL database hear what the others commit."""

from __future__ import annotations

import queue

import pytest

from taskyard.scheduler.store.sql import SqlStore
from tests.integration.postgres import fresh_database

pytestmark = pytest.mark.postgres


def announce_and_roll_back(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.announce("request", "rolled-back")
        raise RuntimeError("roll back")


def test_an_announcement_arrives_once_committed_and_never_if_rolled_back() -> None:
    with fresh_database() as url:
        heard: queue.Queue[tuple[str, str]] = queue.Queue()
        a, b = SqlStore(url, origin="a"), SqlStore(url, origin="b")
        a.migrate()
        stop = b.listen(lambda kind, key: heard.put((kind, key)))
        ignored = a.listen(lambda kind, key: heard.put(("a heard", key)))
        try:
            with pytest.raises(RuntimeError):
                announce_and_roll_back(a)
            with a.transaction() as tx:
                tx.announce("request", "r1")
                tx.announce("worker", "w 1")
            assert heard.get(timeout=10) == ("request", "r1")
            assert heard.get(timeout=10) == ("worker", "w 1")  # keys may hold spaces
            assert heard.empty()  # nothing rolled back, nothing of its own to `a`
        finally:
            stop()
            ignored()
            a.close()
            b.close()


def test_sqlite_has_no_one_to_tell() -> None:
    store = SqlStore("sqlite://")
    store.migrate()
    with store.transaction() as tx:
        tx.announce("request", "r1")
    store.listen(lambda kind, key: None)()
    store.close()
