"""The storage port, in domain terms. Adapters: SQL (`sql.py`), in-memory (`memory.py`).

Every method runs inside one transaction opened by `Store.transaction()`:
either everything done in it is committed, or nothing is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from taskyard.errors import ResourceExhaustedError, UnavailableError
from taskyard.scheduler.domain import (
    Artifact,
    Attempt,
    Dependency,
    Result,
    SchedulerRecord,
    State,
    Tenant,
    Token,
    Worker,
    WorkRequest,
)

DISK_FULL_MESSAGE = "the scheduler's disk is full; nothing was stored, try again later"


class StorageFullError(ResourceExhaustedError):
    """The store could not write: its disk is full. Nothing of the
    transaction was kept; the same call succeeds once space returns."""

    default_reason = "DISK_FULL"

    def __init__(self) -> None:
        super().__init__(DISK_FULL_MESSAGE)


class StoreUnavailableError(UnavailableError):
    """The database could not be reached, or is no longer the primary (a
    failover under way). Nothing of the transaction was kept; the same call
    succeeds once the database answers again."""

    default_reason = "DATABASE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the scheduler's database is unreachable; nothing was stored, try again")


@dataclass(frozen=True)
class WorkRequestFilter:
    """Which work requests a listing returns; empty fields match everything."""

    states: frozenset[State] = field(default_factory=frozenset)
    task_name: str = ""
    worker_name: str = ""
    owner: str = ""
    tenant: str = ""
    results: frozenset[Result] = field(default_factory=frozenset)
    created_after: datetime | None = None
    created_before: datetime | None = None

    def matches(self, work_request: WorkRequest) -> bool:
        """Whether `work_request` passes the filter."""
        return (
            (not self.states or work_request.state in self.states)
            and (not self.task_name or work_request.task_name == self.task_name)
            and (not self.worker_name or work_request.worker_name == self.worker_name)
            and (not self.owner or work_request.owner == self.owner)
            and (not self.tenant or work_request.tenant == self.tenant)
            and (not self.results or work_request.result in self.results)
            and (self.created_after is None or work_request.created_at >= self.created_after)
            and (self.created_before is None or work_request.created_at < self.created_before)
        )


class StoreTransaction(Protocol):
    """What can be read and written inside one transaction."""

    def insert_work_request(self, work_request: WorkRequest) -> None:
        """Store a new work request."""

    def get_work_request(self, work_request_id: str, *, lock: bool = False) -> WorkRequest | None:
        """Return a work request, or None; with `lock`, no other transaction
        changes it until this one ends (a dependency on it is recorded
        knowing how it stands: its end, committed or not, cannot miss it)."""

    def get_work_requests(self, work_request_ids: Collection[str]) -> list[WorkRequest]:
        """Those of these requests that exist, in no particular order."""

    def replace_task_data(self, work_request_id: str, task_data_json: str) -> None:
        """Store a request's task data with its inputs resolved (at unblocking)."""

    def insert_work_requests(self, work_requests: Sequence[WorkRequest]) -> None:
        """Store new work requests, in one go."""

    def insert_dependencies(self, dependencies: Sequence[tuple[str, Dependency]]) -> None:
        """Record what new requests wait for: (the waiting one's id, what)."""

    def dependencies_of(self, work_request_ids: Collection[str]) -> dict[str, list[Dependency]]:
        """What each of these requests waits for (those with none left out)."""

    def waiting_on(self, work_request_ids: Collection[str]) -> list[tuple[str, Dependency]]:
        """The id of every request waiting for one of these, with its
        dependency on it (no request read)."""

    def dependents_of(
        self, work_request_ids: Collection[str], *, lock: bool = False
    ) -> list[tuple[Dependency, WorkRequest]]:
        """Every request waiting for one of these, with its dependency on it;
        with `lock`, the waiting requests are not changed by another
        transaction until this one ends."""

    def get_work_request_by_idempotency_key(self, tenant: str, key: str) -> WorkRequest | None:
        """Return the work request `tenant` submitted with this idempotency key, or None."""

    def replace_work_request(
        self, work_request: WorkRequest, *, expected_state: State, expected_attempt: int
    ) -> bool:
        """Compare-and-set: store `work_request` if the stored one is still in
        `expected_state` at `expected_attempt`; return whether it was."""

    def replace_work_requests(self, changes: Sequence[tuple[WorkRequest, WorkRequest]]) -> None:
        """Store each (before, after) change as `replace_work_request` would,
        in one go; changes whose stored request moved on meanwhile are not
        made (the caller holds their rows locked, so none do)."""

    def claim_work_request(self, work_request: WorkRequest) -> bool:
        """Compare-and-set from PENDING at the same attempt, skipping a row
        another transaction holds (FOR UPDATE SKIP LOCKED where supported)."""

    def list_work_requests(
        self, where: WorkRequestFilter, *, limit: int, before_id: str = ""
    ) -> list[WorkRequest]:
        """Return up to `limit` matching requests, newest (highest id) first,
        with ids below `before_id` when it is set."""

    def work_requests_in_states(self, states: Collection[State]) -> list[WorkRequest]:
        """Return every work request in one of `states`, oldest first."""

    def count_work_requests(self, tenant: str = "") -> dict[tuple[State, str], int]:
        """How many requests there are (of `tenant`, if given), by state and task name."""

    def insert_attempt(self, attempt: Attempt) -> None:
        """Record an attempt that ended."""

    def attempts_of(self, work_request_id: str) -> list[Attempt]:
        """The ended attempts of a request, first first."""

    def insert_worker(self, worker: Worker) -> None:
        """Store a new worker."""

    def replace_worker(self, worker: Worker) -> None:
        """Store a changed worker (matched by name)."""

    def get_worker(self, name: str, *, lock: bool = False) -> Worker | None:
        """Return a worker by name, or None; with `lock`, its row is locked
        until the transaction ends (a change read, made and written with no
        other scheduler's in between)."""

    def get_worker_by_token(self, token_sha256: str) -> Worker | None:
        """Return the worker whose token has this SHA-256, or None."""

    def delete_worker(self, name: str) -> bool:
        """Forget a worker; False if there was none of that name."""

    def list_workers(self) -> list[Worker]:
        """Return every worker, sorted by name."""

    def insert_token(self, token: Token) -> None:
        """Store a new token."""

    def replace_token(self, token: Token) -> None:
        """Store a changed token (matched by id)."""

    def get_token(self, token_id: str) -> Token | None:
        """Return a token by id, or None."""

    def get_token_by_hash(self, secret_sha256: str) -> Token | None:
        """Return the token whose secret has this SHA-256, or None."""

    def list_tokens(self) -> list[Token]:
        """Return every token, newest first."""

    def insert_artifact(self, artifact: Artifact) -> None:
        """Store a new artifact with its manifest."""

    def get_artifact(self, artifact_id: str) -> Artifact | None:
        """Return an artifact (complete or not), or None."""

    def get_artifact_by_key(self, created_by: str, idempotency_key: str) -> Artifact | None:
        """Return the artifact `created_by` declared with this key, or None."""

    def put_tenant(self, tenant: Tenant) -> None:
        """Store a new or changed tenant (matched by name)."""

    def get_tenant(self, name: str) -> Tenant | None:
        """Return a tenant by name, or None."""

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""

    def complete_file(self, artifact_id: str, path: str) -> None:
        """Record that a file's content is stored and verified."""

    def delete_artifact(self, artifact_id: str) -> None:
        """Forget an artifact and its manifest."""

    def list_artifacts(
        self,
        *,
        work_request_id: str,
        category: str,
        limit: int,
        before_id: str = "",
        tenant: str | None = None,
    ) -> list[Artifact]:
        """Complete artifacts, newest first, filtered when the arguments are
        set (`tenant`: its own and those shared with every tenant)."""

    def incomplete_artifacts(self, created_before: datetime) -> list[Artifact]:
        """Artifacts still missing content, created before `created_before`."""

    def incomplete_artifacts_of(self, created_by: str) -> list[Artifact]:
        """Artifacts still missing content that `created_by` declared."""

    def finished_before(self, moment: datetime, limit: int) -> list[str]:
        """Ids of up to `limit` completed or aborted requests that ended before `moment`."""

    def artifacts_of(self, work_request_ids: Collection[str]) -> list[str]:
        """Ids of the artifacts of these requests."""

    def expired_artifacts(self, now: datetime, limit: int) -> list[str]:
        """Ids of up to `limit` artifacts whose `expires_at` has passed."""

    def delete_work_requests(self, work_request_ids: Collection[str]) -> None:
        """With their attempts and dependencies. Forget these requests (their
        artifacts first)."""

    def referenced_blobs(self, blobs: Collection[tuple[str, int]]) -> set[tuple[str, int]]:
        """Those of `blobs` (sha256, size) that some artifact file refers to."""

    def now(self) -> datetime:
        """The store's clock (PostgreSQL's, for every scheduler alike)."""

    def take_lease(self, name: str, holder: str, ttl: float) -> int | None:
        """Hold the lease `name` for `ttl` more seconds of the store's clock:
        renewed if `holder` holds it, taken with the next term if it is
        free or expired. The term now held, or None if another holds it."""

    def holds_lease(self, name: str, holder: str, term: int) -> bool:
        """Whether `holder` holds `name` in `term`, unexpired, and keeps it
        until this transaction ends (whoever would take it waits): the
        fence of a holder's writes."""

    def beat(self, record: SchedulerRecord) -> None:
        """Record that a scheduler is alive (its `seen_at` is the store's now)."""

    def schedulers(self) -> list[SchedulerRecord]:
        """Every scheduler that has beaten, by id."""

    def announce(self, kind: str, key: str) -> None:
        """Tell the other schedulers of this database, once this transaction
        commits, that the `kind` (`request`, `worker`, `token`...) named
        `key` changed (nothing where no other scheduler can be)."""


#: Told (kind, key) of each change another scheduler announced; ("resync",
#: "") when announcements may have been missed (the listener reconnected).
Notice = Callable[[str, str], None]


class Store(Protocol):
    """The scheduler's durable state."""

    #: Whether other schedulers may share it (then they hear announcements).
    shared: bool

    def migrate(self) -> None:
        """Create or upgrade the schema to the current version."""

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """Open a transaction: committed if the block ends normally, else rolled back."""

    def listen(self, notice: Notice) -> Callable[[], None]:
        """Call `notice` (from another thread) for what other schedulers
        announce; return what stops it. A store that no other scheduler
        shares never calls it."""

    def close(self) -> None:
        """Release connections."""
