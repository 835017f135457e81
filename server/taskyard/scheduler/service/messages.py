"""What the scheduler pushes down a worker's session stream, in domain terms."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from taskyard.errors import TaskyardError
from taskyard.scheduler.domain import Lease, WorkRequest


class AbortReason(enum.StrEnum):
    """Why the scheduler stops work on a worker."""

    USER = "user"
    TIMEOUT = "timeout"
    LEASE_LOST = "lease-lost"


class ReportKind(enum.StrEnum):
    """Which report an acknowledgement answers."""

    STARTED = "started"
    COMPLETED = "completed"
    DECLINED = "declined"
    #: A report of a kind the scheduler does not know.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Welcome:
    """The session is open."""

    worker_name: str
    heartbeat_interval: float
    lease_grace: float


@dataclass(frozen=True)
class Assign:
    """Run this work request."""

    work_request: WorkRequest
    task_version: int
    timeout_seconds: float | None


@dataclass(frozen=True)
class AbortWork:
    """Stop running this work request."""

    lease: Lease
    reason: AbortReason
    message: str


@dataclass(frozen=True)
class RefreshMetadata:
    """Send your dynamic metadata again."""


@dataclass(frozen=True)
class Ack:
    """A report was recorded (`problem` None) or refused."""

    lease: Lease
    kind: ReportKind
    problem: TaskyardError | None = None


@dataclass(frozen=True)
class OutputAck:
    """How much of an attempt's output is stored; `closed`: send no more."""

    lease: Lease
    committed: int
    closed: bool


@dataclass(frozen=True)
class Closing:
    """The scheduler is closing the session."""

    reason: str
    reconnect_after: float


SessionMessage = Welcome | Assign | AbortWork | RefreshMetadata | Ack | OutputAck | Closing
