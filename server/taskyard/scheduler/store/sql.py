"""The SQL Store adapter: SQLAlchemy Core on SQLite (default) or PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from taskyard.errors import AlreadyExistsError
from taskyard.scheduler.domain import (
    FINAL_STATES,
    Artifact,
    Attempt,
    Dependency,
    Needs,
    SchedulerRecord,
    State,
    Tenant,
    Token,
    Worker,
    WorkRequest,
)
from taskyard.scheduler.store import leasing, notices, rows
from taskyard.scheduler.store.port import (
    Notice,
    StorageFullError,
    StoreUnavailableError,
    WorkRequestFilter,
)
from taskyard.scheduler.store.prepared import Prepared
from taskyard.scheduler.store.schema import (
    artifact_files,
    artifacts,
    attempts,
    dependencies,
    tenants,
    tokens,
    work_requests,
    workers,
)
from taskyard.scheduler.store.sql_support import (
    disk_full,
    readable,
    readable_one,
    sqlite_begin,
    sqlite_connect,
    unreachable,
)

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


#: Held while migrating: one scheduler at a time (the key is "taskyard" in ASCII).
_MIGRATION_LOCK = text(f"SELECT pg_advisory_xact_lock({int.from_bytes(b'taskyard', 'big')})")

# Statements are built once: building one costs more than running it on SQLite.
_WR = work_requests.c
_WORK_REQUEST_BY_ID = select(work_requests).where(_WR.id == bindparam("b_id"))
_WORK_REQUEST_BY_KEY = select(work_requests).where(
    _WR.tenant == bindparam("b_tenant"), _WR.idempotency_key == bindparam("b_key")
)
_EXPECTED = (_WR.id == bindparam("b_id"), _WR.state == bindparam("b_state"),
             _WR.attempt == bindparam("b_attempt"))  # fmt: skip
_SET_CHANGING = {
    c.name: bindparam(c.name, type_=c.type) for c in _WR if c.name not in rows.FIXED_COLUMNS
}
_SKIP_LOCKED = select(_WR.id).where(*_EXPECTED).with_for_update(skip_locked=True)
# The statements every work request runs, prepared per dialect (prepared.py).
_HOT = {
    "insert": insert(work_requests).values({c.name: bindparam(c.name, type_=c.type) for c in _WR}),
    "replace": update(work_requests).where(*_EXPECTED).values(_SET_CHANGING),
    "claim_skip_locked": update(work_requests)
    .where(_WR.id == _SKIP_LOCKED.scalar_subquery())
    .values(_SET_CHANGING),
    # Every attempt that ends.
    "insert_attempt": insert(attempts).values(
        {c.name: bindparam(c.name, type_=c.type) for c in attempts.c if c.name != "id"}
    ),
    # What waits for one request: asked at every end (and almost always none).
    "waiting_on_one": select(
        dependencies.c.work_request_id, dependencies.c.depends_on, dependencies.c.needs
    ).where(dependencies.c.depends_on == bindparam("b_id", type_=dependencies.c.depends_on.type)),
}
_INSERT_WORKER = insert(workers)
_REPLACE_WORKER = update(workers).where(workers.c.name == bindparam("b_name"))
_WORKER_BY_NAME = select(workers).where(workers.c.name == bindparam("b_name"))
_WORKER_BY_NAME_LOCKED = _WORKER_BY_NAME.with_for_update()
_WORKER_BY_TOKEN = select(workers).where(workers.c.token_sha256 == bindparam("b_token"))
_ALL_WORKERS = select(workers).order_by(workers.c.name)
_INSERT_TOKEN = insert(tokens)
_REPLACE_TOKEN = update(tokens).where(tokens.c.id == bindparam("b_id"))
_TOKEN_BY_ID = select(tokens).where(tokens.c.id == bindparam("b_id"))
_TOKEN_BY_HASH = select(tokens).where(tokens.c.secret_sha256 == bindparam("b_hash"))
_ALL_TOKENS = select(tokens).order_by(tokens.c.created_at.desc(), tokens.c.id.desc())


_AF = artifact_files.c
_DEP = dependencies.c
_WORK_REQUEST_BY_ID_LOCKED = _WORK_REQUEST_BY_ID.with_for_update(read=True)
_WORK_REQUESTS_BY_IDS = select(work_requests).where(_WR.id.in_(bindparam("b_ids", expanding=True)))
_INSERT_DEPENDENCY = insert(dependencies)
_DEPENDENCIES_OF = select(dependencies).where(
    _DEP.work_request_id.in_(bindparam("b_ids", expanding=True))
)
_DEPENDENTS_OF = select(_DEP.work_request_id, _DEP.depends_on, _DEP.needs).where(
    _DEP.depends_on.in_(bindparam("b_ids", expanding=True))
)
_WORK_REQUESTS_LOCKED = _WORK_REQUESTS_BY_IDS.order_by(_WR.id).with_for_update()
_SET_TASK_DATA = (
    update(work_requests)
    .where(_WR.id == bindparam("b_id"))
    .values(task_data_json=bindparam("b_data"))
)
#: Ids bound in one IN list (SQLite's older builds allow 999 parameters).
_CHUNK = 900
_ATTEMPTS_OF = (
    select(attempts).where(attempts.c.work_request_id == bindparam("b_id")).order_by(attempts.c.id)
)
_ARTIFACT_BY_ID = select(artifacts).where(artifacts.c.id == bindparam("b_id"))
_ARTIFACT_BY_KEY = select(artifacts).where(
    artifacts.c.created_by == bindparam("b_by"),
    artifacts.c.idempotency_key == bindparam("b_key"),
)
_FILES_OF = select(artifact_files).where(_AF.artifact_id.in_(bindparam("b_ids", expanding=True)))


def _chunks(ids: Collection[str]) -> Iterator[list[str]]:
    listed = list(ids)
    for start in range(0, len(listed), _CHUNK):
        yield listed[start : start + _CHUNK]


@contextmanager
def _refusing_duplicates(what: str) -> Iterator[None]:
    """Turn a unique-constraint violation into AlreadyExistsError."""
    try:
        yield
    except IntegrityError as error:
        raise AlreadyExistsError(f"{what} exists already") from error


class SqlTransaction:
    """StoreTransaction on one SQLAlchemy connection inside a transaction.

    A failed insert (duplicate) fails the whole transaction; the group
    committer then re-runs the batch one operation per transaction.
    """

    def __init__(self, connection: Connection, hot: dict[str, Prepared], origin: str) -> None:
        self._db = connection
        self._hot = hot
        self._origin = origin
        self._shared = connection.dialect.name == "postgresql"
        self._claim = hot[
            "claim_skip_locked" if connection.dialect.name == "postgresql" else "replace"
        ]

    def _insert(self, statement: Any, row: dict[str, Any], what: str) -> None:
        with _refusing_duplicates(what):
            self._db.execute(statement, row)

    def _first(self, query: Any, **params: Any) -> Any:
        return self._db.execute(query, params).mappings().first()

    def insert_work_request(self, work_request: WorkRequest) -> None:
        row = rows.work_request_row(work_request)
        with _refusing_duplicates(f"work request {work_request.id}"):
            self._hot["insert"].execute(self._db, row)

    def get_work_request(self, work_request_id: str, *, lock: bool = False) -> WorkRequest | None:
        query = _WORK_REQUEST_BY_ID_LOCKED if lock and self._shared else _WORK_REQUEST_BY_ID
        return readable_one(rows.work_request_from, self._first(query, b_id=work_request_id))

    def get_work_requests(
        self, work_request_ids: Collection[str], *, lock: bool = False
    ) -> list[WorkRequest]:
        query = _WORK_REQUESTS_LOCKED if lock and self._shared else _WORK_REQUESTS_BY_IDS
        found: list[WorkRequest] = []
        for chunk in _chunks(sorted(work_request_ids) if lock else work_request_ids):
            rows_of = self._db.execute(query, {"b_ids": chunk}).mappings()
            found += readable(rows.work_request_from, rows_of)
        return found

    def replace_task_data(self, work_request_id: str, task_data_json: str) -> None:
        self._db.execute(_SET_TASK_DATA, {"b_id": work_request_id, "b_data": task_data_json})

    def insert_work_requests(self, work_requests: Sequence[WorkRequest]) -> None:
        if work_requests:
            with _refusing_duplicates(f"one of work requests {work_requests[0].id}..."):
                self._hot["insert"].execute_many(
                    self._db, [rows.work_request_row(w) for w in work_requests]
                )

    def insert_dependencies(self, dependencies: Sequence[tuple[str, Dependency]]) -> None:
        if dependencies:
            self._db.execute(
                _INSERT_DEPENDENCY,
                [{"work_request_id": w, "depends_on": d.on, "needs": d.needs.value}
                 for w, d in dependencies],
            )  # fmt: skip

    def dependencies_of(self, work_request_ids: Collection[str]) -> dict[str, list[Dependency]]:
        found: dict[str, list[Dependency]] = {}
        for chunk in _chunks(work_request_ids):
            for row in self._db.execute(_DEPENDENCIES_OF, {"b_ids": chunk}).mappings():
                dependency = Dependency(row["depends_on"], Needs(row["needs"]))
                found.setdefault(row["work_request_id"], []).append(dependency)
        return found

    def waiting_on(self, work_request_ids: Collection[str]) -> list[tuple[str, Dependency]]:
        if len(work_request_ids) == 1:
            [one] = work_request_ids
            result = self._hot["waiting_on_one"].execute(self._db, {"b_id": one})
            found = cast("list[tuple[str, str, str]]", result.all())
            return [(child, Dependency(on, Needs(needs))) for child, on, needs in found]
        return [
            (child, Dependency(on, Needs(needs)))
            for chunk in _chunks(work_request_ids)
            for child, on, needs in self._db.execute(_DEPENDENTS_OF, {"b_ids": chunk})
        ]

    def dependents_of(
        self, work_request_ids: Collection[str], *, lock: bool = False
    ) -> list[tuple[Dependency, WorkRequest]]:
        links = self.waiting_on(work_request_ids)
        # Each waiting request read (and locked) once, however many it waits for.
        children = {w.id: w for w in self.get_work_requests({c for c, _ in links}, lock=lock)}
        return [(d, children[c]) for c, d in links if c in children]

    def get_work_request_by_idempotency_key(self, tenant: str, key: str) -> WorkRequest | None:
        row = self._first(_WORK_REQUEST_BY_KEY, b_tenant=tenant, b_key=key)
        return readable_one(rows.work_request_from, row)

    def _compare_and_set(
        self, statement: Prepared, work_request: WorkRequest, state: State, attempt: int
    ) -> bool:
        params = rows.changing_columns(work_request)
        params.update(b_id=work_request.id, b_state=state.value, b_attempt=attempt)
        return bool(statement.execute(self._db, params).rowcount == 1)

    def replace_work_request(
        self, work_request: WorkRequest, *, expected_state: State, expected_attempt: int
    ) -> bool:
        return self._compare_and_set(
            self._hot["replace"], work_request, expected_state, expected_attempt
        )

    def replace_work_requests(self, changes: Sequence[tuple[WorkRequest, WorkRequest]]) -> None:
        if not changes:
            return
        params = []
        for before, after in changes:
            values = rows.changing_columns(after)
            values.update(b_id=after.id, b_state=before.state.value, b_attempt=before.attempt)
            params.append(values)
        self._hot["replace"].execute_many(self._db, params)

    def claim_work_request(self, work_request: WorkRequest) -> bool:
        return self._compare_and_set(self._claim, work_request, State.PENDING, work_request.attempt)

    def list_work_requests(
        self, where: WorkRequestFilter, *, limit: int, before_id: str = ""
    ) -> list[WorkRequest]:
        query = select(work_requests).order_by(_WR.id.desc()).limit(limit)
        if where.states:
            query = query.where(_WR.state.in_([s.value for s in where.states]))
        if where.task_name:
            query = query.where(_WR.task_name == where.task_name)
        if where.worker_name:
            query = query.where(_WR.worker_name == where.worker_name)
        if where.owner:
            query = query.where(_WR.owner == where.owner)
        if where.tenant:
            query = query.where(_WR.tenant == where.tenant)
        if where.results:
            query = query.where(_WR.result.in_([r.value for r in where.results]))
        if where.created_after is not None:
            query = query.where(_WR.created_at >= where.created_after)
        if where.created_before is not None:
            query = query.where(_WR.created_at < where.created_before)
        if before_id:
            query = query.where(_WR.id < before_id)
        return readable(rows.work_request_from, self._db.execute(query).mappings())

    def work_requests_in_states(self, states: Collection[State]) -> list[WorkRequest]:
        query = (
            select(work_requests).where(_WR.state.in_([s.value for s in states])).order_by(_WR.id)
        )
        return readable(rows.work_request_from, self._db.execute(query).mappings())

    def insert_worker(self, worker: Worker) -> None:
        self._insert(_INSERT_WORKER, rows.worker_row(worker), f"worker {worker.name}")

    def replace_worker(self, worker: Worker) -> None:
        self._db.execute(_REPLACE_WORKER, {**rows.worker_row(worker), "b_name": worker.name})

    def get_worker(self, name: str, *, lock: bool = False) -> Worker | None:
        row = self._first(_WORKER_BY_NAME_LOCKED if lock else _WORKER_BY_NAME, b_name=name)
        return readable_one(rows.worker_from, row)

    def get_worker_by_token(self, token_sha256: str) -> Worker | None:
        row = self._first(_WORKER_BY_TOKEN, b_token=token_sha256)
        return readable_one(rows.worker_from, row)

    def delete_worker(self, name: str) -> bool:
        found = self._db.execute(delete(workers).where(workers.c.name == name))
        return bool(found.rowcount)

    def list_workers(self) -> list[Worker]:
        return readable(rows.worker_from, self._db.execute(_ALL_WORKERS).mappings())

    def insert_token(self, token: Token) -> None:
        self._insert(_INSERT_TOKEN, rows.token_row(token), f"token {token.id}")

    def replace_token(self, token: Token) -> None:
        self._db.execute(_REPLACE_TOKEN, {**rows.token_row(token), "b_id": token.id})

    def get_token(self, token_id: str) -> Token | None:
        row = self._first(_TOKEN_BY_ID, b_id=token_id)
        return readable_one(rows.token_from, row)

    def get_token_by_hash(self, secret_sha256: str) -> Token | None:
        row = self._first(_TOKEN_BY_HASH, b_hash=secret_sha256)
        return readable_one(rows.token_from, row)

    def list_tokens(self) -> list[Token]:
        return readable(rows.token_from, self._db.execute(_ALL_TOKENS).mappings())

    def insert_artifact(self, artifact: Artifact) -> None:
        self._insert(insert(artifacts), rows.artifact_row(artifact), f"artifact {artifact.id}")
        if artifact.files:
            self._db.execute(insert(artifact_files), rows.artifact_file_rows(artifact))

    def _with_files(self, found: list[Any]) -> list[Artifact]:
        if not found:
            return []
        files: dict[str, list[Any]] = {row["id"]: [] for row in found}
        for file_row in self._db.execute(_FILES_OF, {"b_ids": list(files)}).mappings():
            files[file_row["artifact_id"]].append(file_row)
        return readable(lambda row: rows.artifact_from(row, files[row["id"]]), found)

    def _one_artifact(self, query: Any, **params: Any) -> Artifact | None:
        row = self._first(query, **params)
        found = self._with_files([row]) if row else []
        return found[0] if found else None

    def get_artifact(self, artifact_id: str) -> Artifact | None:
        return self._one_artifact(_ARTIFACT_BY_ID, b_id=artifact_id)

    def get_artifact_by_key(self, created_by: str, idempotency_key: str) -> Artifact | None:
        return self._one_artifact(_ARTIFACT_BY_KEY, b_by=created_by, b_key=idempotency_key)

    def put_tenant(self, tenant: Tenant) -> None:
        row = rows.tenant_row(tenant)
        found = self._db.execute(update(tenants).where(tenants.c.name == tenant.name).values(row))
        if not found.rowcount:
            self._insert(insert(tenants), row, f"tenant {tenant.name}")

    def get_tenant(self, name: str) -> Tenant | None:
        row = self._first(select(tenants).where(tenants.c.name == bindparam("b_name")), b_name=name)
        return readable_one(rows.tenant_from, row)

    def list_tenants(self) -> list[Tenant]:
        found = self._db.execute(select(tenants).order_by(tenants.c.name)).mappings()
        return readable(rows.tenant_from, found)

    def complete_file(self, artifact_id: str, path: str) -> None:
        self._db.execute(
            update(artifact_files)
            .where(_AF.artifact_id == artifact_id, _AF.path == path)
            .values(complete=True)
        )
        missing = select(_AF.path).where(_AF.artifact_id == artifact_id, _AF.complete.is_(False))
        if self._db.execute(missing).first() is None:
            self._db.execute(
                update(artifacts).where(artifacts.c.id == artifact_id).values(complete=True)
            )

    def delete_artifact(self, artifact_id: str) -> None:
        self._db.execute(delete(artifact_files).where(_AF.artifact_id == artifact_id))
        self._db.execute(delete(artifacts).where(artifacts.c.id == artifact_id))

    def list_artifacts(
        self,
        *,
        work_request_id: str,
        category: str,
        limit: int,
        before_id: str = "",
        tenant: str | None = None,
    ) -> list[Artifact]:
        query = (
            select(artifacts)
            .where(artifacts.c.complete.is_(True))
            .order_by(artifacts.c.id.desc())
            .limit(limit)
        )
        if work_request_id:
            query = query.where(artifacts.c.work_request_id == work_request_id)
        if category:
            query = query.where(artifacts.c.category == category)
        if before_id:
            query = query.where(artifacts.c.id < before_id)
        if tenant is not None:
            query = query.where(artifacts.c.tenant.in_([tenant, ""]))
        return self._with_files(list(self._db.execute(query).mappings()))

    def incomplete_artifacts_of(self, created_by: str) -> list[Artifact]:
        query = select(artifacts).where(
            artifacts.c.complete.is_(False), artifacts.c.created_by == created_by
        )
        return self._with_files(list(self._db.execute(query).mappings()))

    def finished_before(self, moment: datetime, limit: int) -> list[str]:
        query = (
            select(_WR.id)
            .where(_WR.state.in_([s.value for s in FINAL_STATES]), _WR.completed_at < moment)
            .limit(limit)
        )
        return [row[0] for row in self._db.execute(query)]

    def artifacts_of(self, work_request_ids: Collection[str]) -> list[str]:
        query = select(artifacts.c.id).where(
            artifacts.c.work_request_id.in_(list(work_request_ids))
        )
        return [row[0] for row in self._db.execute(query)]

    def expired_artifacts(self, now: datetime, limit: int) -> list[str]:
        query = select(artifacts.c.id).where(artifacts.c.expires_at < now).limit(limit)
        return [row[0] for row in self._db.execute(query)]

    def delete_work_requests(self, work_request_ids: Collection[str]) -> None:
        ids = list(work_request_ids)
        self._db.execute(delete(attempts).where(attempts.c.work_request_id.in_(ids)))
        self._db.execute(delete(dependencies).where(_DEP.work_request_id.in_(ids)))
        self._db.execute(delete(dependencies).where(_DEP.depends_on.in_(ids)))
        self._db.execute(delete(work_requests).where(_WR.id.in_(ids)))

    def count_work_requests(self, tenant: str = "") -> dict[tuple[State, str], int]:
        query = select(_WR.state, _WR.task_name, func.count()).group_by(_WR.state, _WR.task_name)
        if tenant:
            query = query.where(_WR.tenant == tenant)
        return {(State(state), task): n for state, task, n in self._db.execute(query)}

    def insert_attempt(self, attempt: Attempt) -> None:
        self._hot["insert_attempt"].execute(self._db, rows.attempt_row(attempt))

    def attempts_of(self, work_request_id: str) -> list[Attempt]:
        found = self._db.execute(_ATTEMPTS_OF, {"b_id": work_request_id}).mappings()
        return readable(rows.attempt_from, found)

    def referenced_blobs(self, blobs: Collection[tuple[str, int]]) -> set[tuple[str, int]]:
        digests = list({sha256 for sha256, _ in blobs})
        query = select(_AF.sha256, _AF.size).where(_AF.sha256.in_(digests)).distinct()
        return {(row[0], row[1]) for row in self._db.execute(query)} & set(blobs)

    def now(self) -> datetime:
        if self._shared:
            stamp: datetime = self._db.execute(select(func.now())).scalar_one()
            return stamp.astimezone(UTC)
        return datetime.now(UTC)

    def take_lease(self, name: str, holder: str, ttl: float) -> int | None:
        return leasing.take(self._db, self.now(), name, holder, ttl)

    def holds_lease(self, name: str, holder: str, term: int) -> bool:
        return leasing.holds(self._db, self.now(), name, holder, term)

    def beat(self, record: SchedulerRecord) -> None:
        leasing.beat(self._db, dataclasses.replace(record, seen_at=self.now()))

    def schedulers(self) -> list[SchedulerRecord]:
        return leasing.all_schedulers(self._db)

    def announce(self, kind: str, key: str) -> None:
        if self._shared:
            notices.announce(self._db, self._origin, kind, key)

    def incomplete_artifacts(self, created_before: datetime) -> list[Artifact]:
        query = select(artifacts).where(
            artifacts.c.complete.is_(False), artifacts.c.created_at < created_before
        )
        return self._with_files(list(self._db.execute(query).mappings()))


class SqlStore:
    """A Store in a SQL database named by a SQLAlchemy URL. `origin` names
    this scheduler among those that share the database (PostgreSQL)."""

    def __init__(self, url: str, origin: str = "") -> None:
        self.url = normalize_url(url)
        self.origin = origin
        self.engine: Engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", sqlite_connect)
            event.listen(self.engine, "begin", sqlite_begin)
        self._hot = {name: Prepared(s, self.engine.dialect) for name, s in _HOT.items()}
        self.shared = self.engine.dialect.name == "postgresql"
        self._local = threading.local()
        self._opened: list[Connection] = []
        self._lock = threading.Lock()

    def migrate(self) -> None:
        """Upgrade the schema to the newest Alembic revision. On PostgreSQL,
        schedulers starting together take turns (an advisory lock held by the
        migrating transaction): the first upgrades, the others find it done."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        logging.getLogger("alembic").setLevel(logging.WARNING)
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(_MIGRATION_LOCK)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _connection(self) -> Connection:
        """This thread's connection, kept open: the scheduler's store thread then
        skips a pool check-out and reset on every transaction. An invalidated
        connection reconnects by itself on its next use."""
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._local.connection = self.engine.connect()
            with self._lock:
                self._opened.append(connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        connection = self._connection()
        try:
            with connection.begin():
                yield SqlTransaction(connection, self._hot, self.origin)
        except DBAPIError as error:
            if disk_full(error):
                raise StorageFullError() from error
            if unreachable(error):
                # A connection to a demoted primary still works: drop it, so
                # that the next transaction connects again (to the new one).
                connection.invalidate()
                raise StoreUnavailableError() from error
            raise

    def listen(self, notice: Notice) -> Callable[[], None]:
        if not self.shared:
            return lambda: None  # a SQLite file has one scheduler
        return notices.Listener(self.engine.url, self.origin, notice).start()

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
        self.engine.dispose()
