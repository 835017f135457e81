"""Domain model of the scheduler: work requests, workers, tokens, and the
state machine of a work request. Pure data; no I/O."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskyard.errors import FailedPreconditionError


class State(enum.StrEnum):
    """Lifecycle state of a work request."""

    #: Waiting for the requests it depends on (`Dependency`) before it may run.
    BLOCKED = "blocked"
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    ABORTED = "aborted"


class Result(enum.StrEnum):
    """How a completed work request ended; NONE until it completes."""

    NONE = ""
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


#: Every allowed transition. Requeue (lost worker) goes ASSIGNED/RUNNING ->
#: PENDING; retry goes COMPLETED/ABORTED -> PENDING; ASSIGNED -> COMPLETED is a
#: task that fails before it starts (unknown task, bad data, timeout);
#: PENDING -> COMPLETED a request found at start that can no longer run (its
#: task is gone, or what was stored of it cannot be used). BLOCKED -> PENDING
#: is its dependencies met, BLOCKED -> ABORTED one of them failed (or a user
#: aborted it), ABORTED -> BLOCKED the failed one retried.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.BLOCKED: frozenset({State.PENDING, State.ABORTED, State.COMPLETED}),
    State.PENDING: frozenset({State.ASSIGNED, State.ABORTED, State.COMPLETED}),
    State.ASSIGNED: frozenset({State.RUNNING, State.COMPLETED, State.PENDING, State.ABORTED}),
    State.RUNNING: frozenset({State.COMPLETED, State.PENDING, State.ABORTED}),
    State.COMPLETED: frozenset({State.PENDING}),
    State.ABORTED: frozenset({State.PENDING, State.BLOCKED}),
}

FINAL_STATES = frozenset({State.COMPLETED, State.ABORTED})
ACTIVE_STATES = frozenset({State.ASSIGNED, State.RUNNING})


class IllegalTransitionError(FailedPreconditionError):
    """A work request cannot go from its state to the one asked for."""

    default_reason = "ILLEGAL_TRANSITION"


def check_transition(current: State, target: State) -> None:
    """Raise IllegalTransitionError unless `current -> target` is allowed."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransitionError(
            f"a {current} work request cannot become {target}",
            metadata={"from": current.value, "to": target.value},
        )


#: The tenant of what existed before tenants, and of what an admin submits
#: without naming one.
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Tenant:
    """A team sharing the farm: its weight in the fair share of slots, and
    its quotas (None: no limit)."""

    name: str
    weight: float = 1.0
    #: The most of its requests assigned or running at once.
    max_running: int | None = None
    #: The most of its requests waiting at once; a submit past it is refused.
    max_pending: int | None = None


class Needs(enum.StrEnum):
    """What a request waits for of one it depends on."""

    #: Its success; its failure, error or abort aborts the waiting request.
    SUCCESS = "success"
    #: Its end, however it ends (a report or clean-up step).
    DONE = "done"


@dataclass(frozen=True)
class Dependency:
    """A request waits for another (`on`) to succeed or to end."""

    on: str
    needs: Needs = Needs.SUCCESS

    def met_by(self, parent: WorkRequest) -> bool | None:
        """True if `parent` as it is meets it, False if it never will (until
        retried), None if it may still."""
        if parent.state not in FINAL_STATES:
            return None
        return self.needs is Needs.DONE or parent.result is Result.SUCCESS


@dataclass(frozen=True)
class WorkError:
    """Why a work request ended in error or was aborted."""

    reason: str
    message: str
    type: str = ""


@dataclass(frozen=True)
class Lease:
    """The right to act on one attempt of one work request."""

    work_request_id: str
    attempt: int


@dataclass(frozen=True)
class WorkRequest:
    """One queued task with its data, and everything that happened to it."""

    id: str
    task_name: str
    task_data_json: str
    priority: int
    created_at: datetime
    #: Orders equal priorities first-in first-out; renewed on retry.
    queue_key: str
    state: State = State.PENDING
    result: Result = Result.NONE
    output_json: str = ""
    error: WorkError | None = None
    attempt: int = 1
    max_attempts: int = 3
    worker_name: str = ""
    timeout_seconds: float | None = None
    idempotency_key: str = ""
    trace_context: dict[str, str] = field(default_factory=dict)
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    #: Set when a user aborts active work: the attempt ends ABORTED, not requeued.
    abort_requested_at: datetime | None = None
    #: Who submitted it (`token:<id>`); fixed at submit.
    owner: str = ""
    #: The team it belongs to: only that tenant's tokens (and admins) see it.
    tenant: str = DEFAULT_TENANT
    #: How the last attempt ended, as its task reported it (a JSON object).
    details_json: str = ""
    #: While BLOCKED: how many of its dependencies are not met yet.
    waiting: int = 0

    @property
    def lease(self) -> Lease:
        """The lease of the current attempt."""
        return Lease(self.id, self.attempt)

    def moved_to(self, target: State, now: datetime, **changes: Any) -> WorkRequest:
        """Return a copy in state `target`, refusing illegal transitions."""
        check_transition(self.state, target)
        return self.with_changes(state=target, updated_at=now, **changes)

    def with_changes(self, **changes: Any) -> WorkRequest:
        """A copy with `changes`: `dataclasses.replace` without re-running
        `__init__` field by field, several times cheaper on every transition
        (there is no `__post_init__` to skip)."""
        unknown = changes.keys() - _WORK_REQUEST_FIELDS
        if unknown:
            raise TypeError(f"WorkRequest has no fields {sorted(unknown)}")
        copy = object.__new__(WorkRequest)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


_WORK_REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(WorkRequest))


@dataclass(frozen=True)
class Attempt:
    """One ended attempt of a work request: where it ran and how it ended.
    The request keeps only its current attempt; these are its history."""

    work_request_id: str
    attempt: int
    worker_name: str
    ended_at: datetime
    #: What the request became: completed, aborted, or pending again (requeued).
    outcome: State
    result: Result = Result.NONE
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    reason: str = ""
    message: str = ""

    @classmethod
    def ended(cls, before: WorkRequest, after: WorkRequest, why: WorkError | None) -> Attempt:
        """The record of `before`'s attempt, which `after` ended (`why`, when
        `after` does not say: a request sent back to the queue)."""
        error = after.error or why
        return cls(
            work_request_id=before.id,
            attempt=before.attempt,
            worker_name=before.worker_name,
            ended_at=after.updated_at or after.completed_at or before.created_at,
            outcome=after.state,
            result=after.result,
            assigned_at=before.assigned_at,
            started_at=after.started_at or before.started_at,
            reason=error.reason if error else "",
            message=error.message if error else "",
        )


class Role(enum.StrEnum):
    """What a client token allows."""

    SUBMIT = "submit"
    ADMIN = "admin"
    WORKER_ACTIVATION = "worker-activation"


@dataclass(frozen=True)
class Token:
    """A client or activation token; only the SHA-256 of its secret is kept."""

    id: str
    secret_sha256: str
    role: Role
    created_at: datetime
    description: str = ""
    expires_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    #: A submit token's tenant; empty for admin (farm-wide) and activation tokens.
    tenant: str = ""

    def valid_at(self, now: datetime) -> bool:
        """Whether the token may be used at `now`."""
        if self.revoked_at is not None or self.used_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Worker:
    """A registered worker and what the scheduler knows of it."""

    name: str
    token_sha256: str
    registered_at: datetime
    enabled: bool = False
    slots: int = 1
    dynamic_metadata: dict[str, Any] = field(default_factory=dict)
    static_metadata: dict[str, Any] = field(default_factory=dict)
    allowed_tasks: tuple[str, ...] = ()
    denied_tasks: tuple[str, ...] = ()
    last_seen_at: datetime | None = None
    #: The scheduler holding its session ("" for none).
    scheduler: str = ""
    #: The tenants an operator reserved it for; empty: it serves every tenant.
    tenants: tuple[str, ...] = ()

    @property
    def metadata(self) -> dict[str, Any]:
        """Dynamic metadata overlaid by the operator's static metadata (static wins)."""
        return {**self.dynamic_metadata, **self.static_metadata}


@dataclass(frozen=True)
class SchedulerRecord:
    """A scheduler sharing the database, as it last said it was."""

    id: str
    address: str
    page: str
    started_at: datetime
    seen_at: datetime


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact's manifest."""

    path: str
    size: int
    sha256: str
    content_type: str = ""
    #: True once the content is stored and verified.
    complete: bool = False


@dataclass(frozen=True)
class Artifact:
    """Files produced together, visible once every file is complete."""

    id: str
    category: str
    created_at: datetime
    files: tuple[ArtifactFile, ...]
    data_json: str = "{}"
    work_request_id: str = ""
    expires_at: datetime | None = None
    #: Who declared it (`token:<id>` or `worker:<name>`): only they upload to it.
    created_by: str = ""
    #: The key its declaration was made with, unique to `created_by`.
    idempotency_key: str = ""
    #: Whose it is: its work request's tenant, or its uploader's; empty for
    #: one an admin uploaded, which every tenant may read (an environment).
    tenant: str = DEFAULT_TENANT

    @property
    def complete(self) -> bool:
        """Whether every file has arrived and been verified."""
        return all(f.complete for f in self.files)

    def file(self, path: str) -> ArtifactFile | None:
        """The manifest entry of `path`, if any."""
        return next((f for f in self.files if f.path == path), None)
