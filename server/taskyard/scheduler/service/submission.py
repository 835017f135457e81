"""What a client submits, and what it gets back: plain data, shared by the
submit use case and those that observe it (tracing)."""

from __future__ import annotations

from dataclasses import dataclass

from taskyard.scheduler.domain import DEFAULT_TENANT, Dependency, WorkRequest


@dataclass(frozen=True)
class SubmitSpec:
    """What a client asks to run."""

    task_name: str
    task_data_json: str = ""
    priority: int = 0
    timeout_seconds: float | None = None
    idempotency_key: str = ""
    max_attempts: int = 0
    #: Who submits it (`token:<id>`), set from the caller.
    owner: str = ""
    #: Whose it is (`auth.submitting_tenant`).
    tenant: str = DEFAULT_TENANT
    #: Its name within its batch, for the others' `after` and inputs.
    ref: str = ""
    #: What it waits for: ids, or refs of its batch.
    after: tuple[Dependency, ...] = ()


@dataclass(frozen=True)
class Submitted:
    """A queued work request; `created` is False for an idempotent replay."""

    work_request: WorkRequest
    created: bool
