"""Schedulers sharing a PostgreSQL database hear what the others commit, and
take turns changing one record."""

from __future__ import annotations

import dataclasses
import queue
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from taskyard.scheduler.domain import Worker
from taskyard.scheduler.store.port import StoreUnavailableError
from taskyard.scheduler.store.sql import SqlStore, normalize_url
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


def test_a_worker_read_to_be_changed_is_locked_until_the_change_commits() -> None:
    """Two schedulers changing one worker's record (a session moving from
    one to the other) take turns: the second reads what the first wrote."""
    with fresh_database() as url:
        a, b = SqlStore(url, origin="a"), SqlStore(url, origin="b")
        a.migrate()
        with a.transaction() as tx:
            tx.insert_worker(Worker("w1", "f" * 64, datetime.now(UTC), scheduler="a"))
        seen: queue.Queue[str] = queue.Queue()

        def moves_to_b() -> None:
            with b.transaction() as tx:
                worker = tx.get_worker("w1", lock=True)
                assert worker is not None
                seen.put(worker.scheduler)
                tx.replace_worker(dataclasses.replace(worker, scheduler="b"))

        try:
            with a.transaction() as tx:
                worker = tx.get_worker("w1", lock=True)
                assert worker is not None
                mover = threading.Thread(target=moves_to_b)
                mover.start()
                with pytest.raises(queue.Empty):
                    seen.get(timeout=0.5)  # b waits for a's transaction
                tx.replace_worker(dataclasses.replace(worker, scheduler=""))
            mover.join(10)
            assert seen.get(timeout=10) == ""  # and then reads what a wrote
            with a.transaction() as tx:
                assert tx.get_worker("w1") == dataclasses.replace(worker, scheduler="b")
        finally:
            a.close()
            b.close()


def test_schedulers_starting_together_migrate_one_after_the_other() -> None:
    with fresh_database() as url:
        stores = [SqlStore(url, origin=f"s{n}") for n in range(3)]
        start = threading.Barrier(len(stores))
        failures: list[BaseException] = []

        def migrate(store: SqlStore) -> None:
            start.wait()
            try:
                store.migrate()
            except Exception as error:
                failures.append(error)

        threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert failures == []
            with stores[0].transaction() as tx:
                assert tx.list_tokens() == []  # the schema is there, once
        finally:
            for store in stores:
                store.close()


def test_a_database_gone_away_is_unavailable_and_then_reached_again() -> None:
    """A failover cuts the scheduler's connection: the transaction under way
    fails as UNAVAILABLE (a client tries again), the next one reconnects."""
    with fresh_database() as url:
        store = SqlStore(url)
        store.migrate()
        admin = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
        try:
            with store.transaction() as tx:
                tx.insert_worker(Worker("w1", "f" * 64, datetime.now(UTC)))
            with admin.connect() as connection:  # as a failover would
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                )  # fmt: skip
            with pytest.raises(StoreUnavailableError), store.transaction() as tx:
                tx.get_worker("w1")
            with store.transaction() as tx:
                assert tx.get_worker("w1") is not None
        finally:
            admin.dispose()
            store.close()
