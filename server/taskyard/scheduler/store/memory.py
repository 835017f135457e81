"""An in-memory Store: the same contract as the SQL adapter, for unit tests.

A transaction works on copies of the tables and swaps them in on commit, so a
failed transaction leaves nothing behind, as in a database.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from taskyard.errors import AlreadyExistsError
from taskyard.scheduler.domain import (
    DEFAULT_TENANT,
    FINAL_STATES,
    Artifact,
    Attempt,
    Dependency,
    SchedulerRecord,
    State,
    Tenant,
    Token,
    Worker,
    WorkRequest,
)
from taskyard.scheduler.store.port import Notice, WorkRequestFilter


@dataclass
class _Tables:
    work_requests: dict[str, WorkRequest] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    #: name -> (holder, term, expires at)
    leases: dict[str, tuple[str, int, datetime]] = field(default_factory=dict)
    schedulers: dict[str, SchedulerRecord] = field(default_factory=dict)
    tenants: dict[str, Tenant] = field(
        default_factory=lambda: {DEFAULT_TENANT: Tenant(DEFAULT_TENANT)}
    )
    #: request -> what it waits for
    dependencies: dict[str, tuple[Dependency, ...]] = field(default_factory=dict)

    def copy(self) -> _Tables:
        return _Tables(
            dict(self.work_requests),
            dict(self.workers),
            dict(self.tokens),
            dict(self.artifacts),
            list(self.attempts),
            dict(self.leases),
            dict(self.schedulers),
            dict(self.tenants),
            dict(self.dependencies),
        )


class MemoryTransaction:
    """StoreTransaction over copies of the tables."""

    def __init__(self, tables: _Tables) -> None:
        self.tables = tables

    def announce(self, kind: str, key: str) -> None:
        """Nobody else to tell."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def take_lease(self, name: str, holder: str, ttl: float) -> int | None:
        now = self.now()
        found = self.tables.leases.get(name)
        if found is not None and found[0] != holder and found[2] >= now:
            return None
        renewing = found is not None and found[0] == holder and found[2] >= now
        term = (found[1] if renewing else found[1] + 1) if found is not None else 1
        self.tables.leases[name] = (holder, term, now + timedelta(seconds=ttl))
        return term

    def holds_lease(self, name: str, holder: str, term: int) -> bool:
        found = self.tables.leases.get(name)
        return found is not None and found[:2] == (holder, term) and found[2] >= self.now()

    def beat(self, record: SchedulerRecord) -> None:
        self.tables.schedulers[record.id] = replace(record, seen_at=self.now())

    def schedulers(self) -> list[SchedulerRecord]:
        return [self.tables.schedulers[key] for key in sorted(self.tables.schedulers)]

    def insert_work_request(self, work_request: WorkRequest) -> None:
        key = work_request.idempotency_key
        if work_request.id in self.tables.work_requests or (
            key and self.get_work_request_by_idempotency_key(work_request.tenant, key)
        ):
            raise AlreadyExistsError(f"work request {work_request.id} exists already")
        self.tables.work_requests[work_request.id] = work_request

    def get_work_request(self, work_request_id: str, *, lock: bool = False) -> WorkRequest | None:
        return self.tables.work_requests.get(work_request_id)

    def replace_work_requests(self, changes: Sequence[tuple[WorkRequest, WorkRequest]]) -> None:
        for before, after in changes:
            self.replace_work_request(
                after, expected_state=before.state, expected_attempt=before.attempt
            )

    def get_work_requests(self, work_request_ids: Collection[str]) -> list[WorkRequest]:
        found = (self.tables.work_requests.get(i) for i in work_request_ids)
        return [w for w in found if w is not None]

    def replace_task_data(self, work_request_id: str, task_data_json: str) -> None:
        current = self.tables.work_requests[work_request_id]
        self.tables.work_requests[work_request_id] = replace(current, task_data_json=task_data_json)

    def insert_work_requests(self, work_requests: Sequence[WorkRequest]) -> None:
        for work_request in work_requests:
            self.insert_work_request(work_request)

    def insert_dependencies(self, dependencies: Sequence[tuple[str, Dependency]]) -> None:
        for work_request_id, dependency in dependencies:
            known = self.tables.dependencies.get(work_request_id, ())
            self.tables.dependencies[work_request_id] = (*known, dependency)

    def dependencies_of(self, work_request_ids: Collection[str]) -> dict[str, list[Dependency]]:
        found = ((i, self.tables.dependencies.get(i)) for i in work_request_ids)
        return {i: list(d) for i, d in found if d}

    def waiting_on(self, work_request_ids: Collection[str]) -> list[tuple[str, Dependency]]:
        wanted = set(work_request_ids)
        return [
            (child, dependency)
            for child, waits in self.tables.dependencies.items()
            for dependency in waits
            if dependency.on in wanted and child in self.tables.work_requests
        ]

    def dependents_of(
        self, work_request_ids: Collection[str], *, lock: bool = False
    ) -> list[tuple[Dependency, WorkRequest]]:
        return [
            (dependency, self.tables.work_requests[child])
            for child, dependency in self.waiting_on(work_request_ids)
        ]

    def get_work_request_by_idempotency_key(self, tenant: str, key: str) -> WorkRequest | None:
        found = (
            w
            for w in self.tables.work_requests.values()
            if (w.tenant, w.idempotency_key) == (tenant, key)
        )
        return next(found, None)

    def replace_work_request(
        self, work_request: WorkRequest, *, expected_state: State, expected_attempt: int
    ) -> bool:
        stored = self.tables.work_requests.get(work_request.id)
        if stored is None or (stored.state, stored.attempt) != (expected_state, expected_attempt):
            return False
        self.tables.work_requests[work_request.id] = work_request
        return True

    def claim_work_request(self, work_request: WorkRequest) -> bool:
        return self.replace_work_request(
            work_request, expected_state=State.PENDING, expected_attempt=work_request.attempt
        )

    def list_work_requests(
        self, where: WorkRequestFilter, *, limit: int, before_id: str = ""
    ) -> list[WorkRequest]:
        found = [
            w
            for w in self.tables.work_requests.values()
            if where.matches(w) and (not before_id or w.id < before_id)
        ]
        return sorted(found, key=lambda w: w.id, reverse=True)[:limit]

    def work_requests_in_states(self, states: Collection[State]) -> list[WorkRequest]:
        found = (w for w in self.tables.work_requests.values() if w.state in states)
        return sorted(found, key=lambda w: w.id)

    def insert_worker(self, worker: Worker) -> None:
        if worker.name in self.tables.workers or self.get_worker_by_token(worker.token_sha256):
            raise AlreadyExistsError(f"worker {worker.name} exists already")
        self.tables.workers[worker.name] = worker

    def replace_worker(self, worker: Worker) -> None:
        self.tables.workers[worker.name] = worker

    def get_worker(self, name: str, *, lock: bool = False) -> Worker | None:
        return self.tables.workers.get(name)

    def get_worker_by_token(self, token_sha256: str) -> Worker | None:
        found = (w for w in self.tables.workers.values() if w.token_sha256 == token_sha256)
        return next(found, None)

    def delete_worker(self, name: str) -> bool:
        return self.tables.workers.pop(name, None) is not None

    def list_workers(self) -> list[Worker]:
        return sorted(self.tables.workers.values(), key=lambda w: w.name)

    def insert_token(self, token: Token) -> None:
        if token.id in self.tables.tokens or self.get_token_by_hash(token.secret_sha256):
            raise AlreadyExistsError(f"token {token.id} exists already")
        self.tables.tokens[token.id] = token

    def replace_token(self, token: Token) -> None:
        self.tables.tokens[token.id] = token

    def get_token(self, token_id: str) -> Token | None:
        return self.tables.tokens.get(token_id)

    def get_token_by_hash(self, secret_sha256: str) -> Token | None:
        found = (t for t in self.tables.tokens.values() if t.secret_sha256 == secret_sha256)
        return next(found, None)

    def list_tokens(self) -> list[Token]:
        return sorted(self.tables.tokens.values(), key=lambda t: t.created_at, reverse=True)

    def insert_artifact(self, artifact: Artifact) -> None:
        key = artifact.idempotency_key
        if artifact.id in self.tables.artifacts or (
            key and self.get_artifact_by_key(artifact.created_by, key)
        ):
            raise AlreadyExistsError(f"artifact {artifact.id} exists already")
        self.tables.artifacts[artifact.id] = artifact

    def get_artifact(self, artifact_id: str) -> Artifact | None:
        return self.tables.artifacts.get(artifact_id)

    def put_tenant(self, tenant: Tenant) -> None:
        self.tables.tenants[tenant.name] = tenant

    def get_tenant(self, name: str) -> Tenant | None:
        return self.tables.tenants.get(name)

    def list_tenants(self) -> list[Tenant]:
        return [self.tables.tenants[name] for name in sorted(self.tables.tenants)]

    def get_artifact_by_key(self, created_by: str, idempotency_key: str) -> Artifact | None:
        found = (
            a
            for a in self.tables.artifacts.values()
            if (a.created_by, a.idempotency_key) == (created_by, idempotency_key)
        )
        return next(found, None)

    def complete_file(self, artifact_id: str, path: str) -> None:
        artifact = self.tables.artifacts[artifact_id]
        files = tuple(replace(f, complete=True) if f.path == path else f for f in artifact.files)
        self.tables.artifacts[artifact_id] = replace(artifact, files=files)

    def delete_artifact(self, artifact_id: str) -> None:
        self.tables.artifacts.pop(artifact_id, None)

    def list_artifacts(
        self,
        *,
        work_request_id: str,
        category: str,
        limit: int,
        before_id: str = "",
        tenant: str | None = None,
    ) -> list[Artifact]:
        found = [
            a
            for a in self.tables.artifacts.values()
            if a.complete
            and (not work_request_id or a.work_request_id == work_request_id)
            and (not category or a.category == category)
            and (not before_id or a.id < before_id)
            and (tenant is None or a.tenant in (tenant, ""))
        ]
        return sorted(found, key=lambda a: a.id, reverse=True)[:limit]

    def incomplete_artifacts_of(self, created_by: str) -> list[Artifact]:
        return [
            a
            for a in self.tables.artifacts.values()
            if not a.complete and a.created_by == created_by
        ]

    def finished_before(self, moment: datetime, limit: int) -> list[str]:
        return [
            w.id
            for w in self.tables.work_requests.values()
            if w.state in FINAL_STATES and w.completed_at is not None and w.completed_at < moment
        ][:limit]

    def artifacts_of(self, work_request_ids: Collection[str]) -> list[str]:
        wanted = set(work_request_ids)
        return [a.id for a in self.tables.artifacts.values() if a.work_request_id in wanted]

    def expired_artifacts(self, now: datetime, limit: int) -> list[str]:
        return [
            a.id
            for a in self.tables.artifacts.values()
            if a.expires_at is not None and a.expires_at < now
        ][:limit]

    def delete_work_requests(self, work_request_ids: Collection[str]) -> None:
        for work_request_id in work_request_ids:
            self.tables.work_requests.pop(work_request_id, None)
        gone = set(work_request_ids)
        self.tables.attempts = [a for a in self.tables.attempts if a.work_request_id not in gone]
        self.tables.dependencies = {
            child: kept
            for child, waits in self.tables.dependencies.items()
            if child not in gone and (kept := tuple(d for d in waits if d.on not in gone))
        }

    def count_work_requests(self, tenant: str = "") -> dict[tuple[State, str], int]:
        found = self.tables.work_requests.values()
        return dict(
            Counter((w.state, w.task_name) for w in found if not tenant or w.tenant == tenant)
        )

    def insert_attempt(self, attempt: Attempt) -> None:
        self.tables.attempts.append(attempt)

    def attempts_of(self, work_request_id: str) -> list[Attempt]:
        return [a for a in self.tables.attempts if a.work_request_id == work_request_id]

    def referenced_blobs(self, blobs: Collection[tuple[str, int]]) -> set[tuple[str, int]]:
        files = {(f.sha256, f.size) for a in self.tables.artifacts.values() for f in a.files}
        return files & set(blobs)

    def incomplete_artifacts(self, created_before: datetime) -> list[Artifact]:
        return [
            a
            for a in self.tables.artifacts.values()
            if not a.complete and a.created_at < created_before
        ]


class MemoryStore:
    """A Store kept in memory; lost when the process ends (and no other
    scheduler shares it: announcements go nowhere)."""

    shared = False

    def __init__(self) -> None:
        self._tables = _Tables()
        self._lock = threading.Lock()

    def migrate(self) -> None:
        """Nothing to migrate."""

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        with self._lock:
            transaction = MemoryTransaction(self._tables.copy())
            yield transaction
            self._tables = transaction.tables

    def listen(self, notice: Notice) -> Callable[[], None]:
        """No other scheduler shares it."""
        return lambda: None

    def close(self) -> None:
        """Nothing to release."""
