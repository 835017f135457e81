"""The SQL Store adapter: SQLAlchemy Core on SQLite (default) or PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskyard.errors import AlreadyExistsError
from taskyard.scheduler.domain import State, Token, Worker, WorkRequest
from taskyard.scheduler.store import rows
from taskyard.scheduler.store.port import WorkRequestFilter
from taskyard.scheduler.store.schema import tokens, work_requests, workers

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite database file."""
    return f"sqlite:///{path}"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT: take it over (the
    # SQLAlchemy recipe) and begin transactions ourselves in `_sqlite_begin`.
    dbapi_connection.isolation_level = None
    # WAL lets readers run beside the writer; FULL makes every commit durable.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class SqlTransaction:
    """StoreTransaction on one SQLAlchemy connection inside a transaction."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection
        self._skip_locked = connection.dialect.name == "postgresql"

    def _insert(self, statement: Any, what: str) -> None:
        try:
            with self._db.begin_nested():
                self._db.execute(statement)
        except IntegrityError as error:
            raise AlreadyExistsError(f"{what} exists already") from error

    def insert_work_request(self, work_request: WorkRequest) -> None:
        row = rows.work_request_row(work_request)
        self._insert(insert(work_requests).values(row), f"work request {work_request.id}")

    def get_work_request(self, work_request_id: str) -> WorkRequest | None:
        query = select(work_requests).where(work_requests.c.id == work_request_id)
        row = self._db.execute(query).mappings().first()
        return rows.work_request_from(row) if row else None

    def get_work_request_by_idempotency_key(self, key: str) -> WorkRequest | None:
        query = select(work_requests).where(work_requests.c.idempotency_key == key)
        row = self._db.execute(query).mappings().first()
        return rows.work_request_from(row) if row else None

    def replace_work_request(
        self, work_request: WorkRequest, *, expected_state: State, expected_attempt: int
    ) -> bool:
        statement = (
            update(work_requests)
            .where(
                work_requests.c.id == work_request.id,
                work_requests.c.state == expected_state.value,
                work_requests.c.attempt == expected_attempt,
            )
            .values(rows.work_request_row(work_request))
        )
        return self._db.execute(statement).rowcount == 1

    def claim_work_request(self, work_request: WorkRequest) -> bool:
        if not self._skip_locked:
            return self.replace_work_request(
                work_request, expected_state=State.PENDING, expected_attempt=work_request.attempt
            )
        claimable = (
            select(work_requests.c.id)
            .where(
                work_requests.c.id == work_request.id,
                work_requests.c.state == State.PENDING.value,
                work_requests.c.attempt == work_request.attempt,
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(work_requests)
            .where(work_requests.c.id == claimable)
            .values(rows.work_request_row(work_request))
        )
        return self._db.execute(statement).rowcount == 1

    def list_work_requests(
        self, where: WorkRequestFilter, *, limit: int, before_id: str = ""
    ) -> list[WorkRequest]:
        query = select(work_requests).order_by(work_requests.c.id.desc()).limit(limit)
        if where.states:
            query = query.where(work_requests.c.state.in_([s.value for s in where.states]))
        if where.task_name:
            query = query.where(work_requests.c.task_name == where.task_name)
        if where.worker_name:
            query = query.where(work_requests.c.worker_name == where.worker_name)
        if before_id:
            query = query.where(work_requests.c.id < before_id)
        return [rows.work_request_from(r) for r in self._db.execute(query).mappings()]

    def work_requests_in_states(self, states: Collection[State]) -> list[WorkRequest]:
        query = (
            select(work_requests)
            .where(work_requests.c.state.in_([s.value for s in states]))
            .order_by(work_requests.c.id)
        )
        return [rows.work_request_from(r) for r in self._db.execute(query).mappings()]

    def insert_worker(self, worker: Worker) -> None:
        self._insert(insert(workers).values(rows.worker_row(worker)), f"worker {worker.name}")

    def replace_worker(self, worker: Worker) -> None:
        statement = (
            update(workers).where(workers.c.name == worker.name).values(rows.worker_row(worker))
        )
        self._db.execute(statement)

    def get_worker(self, name: str) -> Worker | None:
        row = self._db.execute(select(workers).where(workers.c.name == name)).mappings().first()
        return rows.worker_from(row) if row else None

    def get_worker_by_token(self, token_sha256: str) -> Worker | None:
        query = select(workers).where(workers.c.token_sha256 == token_sha256)
        row = self._db.execute(query).mappings().first()
        return rows.worker_from(row) if row else None

    def list_workers(self) -> list[Worker]:
        query = select(workers).order_by(workers.c.name)
        return [rows.worker_from(r) for r in self._db.execute(query).mappings()]

    def insert_token(self, token: Token) -> None:
        self._insert(insert(tokens).values(rows.token_row(token)), f"token {token.id}")

    def replace_token(self, token: Token) -> None:
        statement = update(tokens).where(tokens.c.id == token.id).values(rows.token_row(token))
        self._db.execute(statement)

    def get_token(self, token_id: str) -> Token | None:
        row = self._db.execute(select(tokens).where(tokens.c.id == token_id)).mappings().first()
        return rows.token_from(row) if row else None

    def get_token_by_hash(self, secret_sha256: str) -> Token | None:
        query = select(tokens).where(tokens.c.secret_sha256 == secret_sha256)
        row = self._db.execute(query).mappings().first()
        return rows.token_from(row) if row else None

    def list_tokens(self) -> list[Token]:
        query = select(tokens).order_by(tokens.c.created_at.desc(), tokens.c.id.desc())
        return [rows.token_from(r) for r in self._db.execute(query).mappings()]


class SqlStore:
    """A Store in a SQL database named by a SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)

    def migrate(self) -> None:
        """Upgrade the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        logging.getLogger("alembic").setLevel(logging.WARNING)
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        with self.engine.begin() as connection:
            yield SqlTransaction(connection)

    def close(self) -> None:
        self.engine.dispose()
