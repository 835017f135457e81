"""Why a pending work request is not running: one verdict per known worker. Pure."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from taskyard.scheduler.domain import Dependency
from taskyard.scheduler.matching import WorkerView
from taskyard.tasks import Task


class Eligibility(enum.StrEnum):
    """The first reason a worker is not running a request, most lasting first."""

    DENY_LISTED = "deny-listed"
    NOT_ALLOW_LISTED = "not-allow-listed"
    RESERVED = "reserved"
    VERSION_MISMATCH = "version-mismatch"
    CANNOT_RUN = "cannot-run"
    DISABLED = "disabled"
    NOT_CONNECTED = "not-connected"
    BUSY = "busy"
    ELIGIBLE = "eligible"


#: Verdicts that say the worker could run the request as it stands.
CAPABLE = frozenset(
    {Eligibility.DISABLED, Eligibility.NOT_CONNECTED, Eligibility.BUSY, Eligibility.ELIGIBLE}
)


@dataclass(frozen=True)
class WorkerStatus:
    """A worker's view for matching plus its live state."""

    view: WorkerView
    enabled: bool
    connected: bool
    free_slots: int


@dataclass(frozen=True)
class Verdict:
    """The verdict on one worker."""

    worker_name: str
    eligibility: Eligibility
    detail: str


@dataclass(frozen=True)
class Explanation:
    """Every worker's verdict, and whether any known worker could run it."""

    verdicts: tuple[Verdict, ...]
    runnable: bool
    summary: str
    #: While it is blocked: what it still waits for.
    waiting_for: tuple[Dependency, ...] = ()


def _capability(task: Task, view: WorkerView) -> tuple[Eligibility, str] | None:
    """Why the worker could never run the task as it stands; None if it could."""
    if task.name in view.denied_tasks:
        return Eligibility.DENY_LISTED, f"{task.name} is on the worker's deny list"
    if view.filters_out(task.name):
        return Eligibility.NOT_ALLOW_LISTED, f"{task.name} is not on the worker's allow list"
    key = task.prefix_with_task_name("version")
    reported = view.metadata.get(key)
    if reported != task.TASK_VERSION:
        has = "does not report it" if reported is None else f"has {reported!r}"
        detail = f"scheduler has {task.name} version {task.TASK_VERSION}, worker {has}"
        return Eligibility.VERSION_MISMATCH, detail
    metadata = dict(view.metadata)
    if not task.can_run_on(metadata):
        return Eligibility.CANNOT_RUN, task.cannot_run_reason(metadata)
    return None


def verdict_on(task: Task, worker: WorkerStatus, tenant: str = "") -> Verdict:
    """The first reason `worker` is not running a request of `task` (of `tenant`)."""
    name = worker.view.name
    refusal = _capability(task, worker.view)
    if refusal is not None:
        return Verdict(name, *refusal)
    if tenant and not worker.view.serves(tenant):
        reserved = ", ".join(sorted(worker.view.tenants))
        return Verdict(name, Eligibility.RESERVED, f"the worker is reserved for {reserved}")
    if not worker.enabled:
        return Verdict(name, Eligibility.DISABLED, f"run: taskyard workers enable {name}")
    if not worker.connected:
        return Verdict(name, Eligibility.NOT_CONNECTED, "the worker has no open session")
    if worker.free_slots <= 0:
        return Verdict(name, Eligibility.BUSY, "all the worker's slots are taken")
    return Verdict(
        name, Eligibility.ELIGIBLE, "it will take the request when nothing ahead suits it"
    )


def explain(
    task: Task,
    workers: Iterable[WorkerStatus],
    tenant: str = "",
    held_back: str = "",
    waiting_for: Iterable[Dependency] = (),
) -> Explanation:
    """Explain, for a pending request of the configured `task` (of `tenant`),
    every worker's verdict; `held_back` says why it waits besides, if it
    does (its tenant at its running ceiling, requests it waits for)."""
    verdicts = tuple(
        sorted((verdict_on(task, w, tenant) for w in workers), key=lambda v: v.worker_name)
    )
    runnable = any(v.eligibility in CAPABLE for v in verdicts)
    if not verdicts:
        summary = "No worker is known to the scheduler; start one with `taskyard worker`."
    elif not runnable:
        reasons = sorted({v.detail for v in verdicts})
        said = reasons[0] if len(reasons) == 1 else f"{reasons[0]}; and {len(reasons) - 1} more"
        summary = f"No known worker could run this {task.name} request as it stands: {said}."
    else:
        capable = sum(v.eligibility in CAPABLE for v in verdicts)
        summary = f"{capable} of {len(verdicts)} known workers could run it."
    if held_back:
        summary = f"{held_back}. {summary}"
    return Explanation(verdicts, runnable, summary, tuple(waiting_for))
