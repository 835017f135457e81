"""A throwaway PostgreSQL database for a test run, or a skip (a failure in CI)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from taskyard.scheduler.store.sql import normalize_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """TASKYARD_TEST_POSTGRES_URL, else the local default."""
    return normalize_url(os.environ.get("TASKYARD_TEST_POSTGRES_URL", DEFAULT_URL))


def unavailable(reason: str) -> None:
    """Skip locally; fail where PostgreSQL is required (CI sets TASKYARD_REQUIRE_POSTGRES)."""
    if os.environ.get("TASKYARD_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required here but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not reachable: {reason}")


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it afterwards."""
    admin = create_engine(server_url(), isolation_level="AUTOCOMMIT")
    name = f"taskyard_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        unavailable(str(error.orig).strip().splitlines()[0])
    try:
        yield make_url(server_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
