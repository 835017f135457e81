"""The same store tests run against every adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskyard.scheduler.store.memory import MemoryStore
from taskyard.scheduler.store.port import Store
from taskyard.scheduler.store.sql import SqlStore
from tests.integration.postgres import fresh_database

POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres)


@contextmanager
def sql_store_of(kind: str, tmp_path: Path) -> Iterator[SqlStore]:
    """A migrated, empty SQL store: SQLite in `tmp_path`, or a fresh PostgreSQL database."""
    if kind == "sqlite":
        store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
        store.migrate()
        yield store
        store.close()
        return
    with fresh_database() as url:
        store = SqlStore(url)
        store.migrate()
        yield store
        store.close()


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store of each kind."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with sql_store_of(request.param, tmp_path) as sql:
        yield sql


@pytest.fixture(params=["sqlite", POSTGRES])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A migrated, empty SQL store of each kind."""
    with sql_store_of(request.param, tmp_path) as sql:
        yield sql
