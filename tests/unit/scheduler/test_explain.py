"""Explain: one verdict per worker, the lasting reasons first."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from taskyard.scheduler.explain import Eligibility, WorkerStatus, explain
from taskyard.scheduler.matching import WorkerView
from taskyard.tasks import Command, Noop


def status(
    metadata: Mapping[str, object],
    *,
    enabled: bool = True,
    connected: bool = True,
    free: int = 1,
    deny: tuple[str, ...] = (),
    allow: tuple[str, ...] = (),
    name: str = "w",
) -> WorkerStatus:
    return WorkerStatus(WorkerView.of(name, metadata, allow, deny), enabled, connected, free)


NOOP = {"noop:version": 1}


@pytest.mark.parametrize(
    ("worker", "eligibility"),
    [
        (status(NOOP), Eligibility.ELIGIBLE),
        (status(NOOP, free=0), Eligibility.BUSY),
        (status(NOOP, connected=False), Eligibility.NOT_CONNECTED),
        (status(NOOP, enabled=False, connected=False), Eligibility.DISABLED),
        (status({"noop:version": 2}, enabled=False), Eligibility.VERSION_MISMATCH),
        (status({}), Eligibility.VERSION_MISMATCH),
        (status(NOOP, deny=("noop",)), Eligibility.DENY_LISTED),
        (status(NOOP, allow=("other",)), Eligibility.NOT_ALLOW_LISTED),
    ],
)
def test_the_first_reason(worker: WorkerStatus, eligibility: Eligibility) -> None:
    task = Noop()
    task.configure({})
    [verdict] = explain(task, [worker]).verdicts
    assert verdict.eligibility is eligibility


def test_a_version_mismatch_names_both_versions() -> None:
    task = Noop()
    [verdict] = explain(task, [status({"noop:version": 7})]).verdicts
    assert verdict.detail == "scheduler has noop version 1, worker has 7"


def test_it_says_plainly_when_no_known_worker_could_ever_run_it() -> None:
    task = Noop()
    workers = [status({}, name="a"), status(NOOP, deny=("noop",), name="b")]
    explanation = explain(task, workers)
    assert not explanation.runnable
    assert "No known worker could run this noop request" in explanation.summary
    assert [v.worker_name for v in explanation.verdicts] == ["a", "b"]


def test_busy_or_offline_workers_still_count_as_able() -> None:
    explanation = explain(Noop(), [status(NOOP, free=0), status(NOOP, connected=False)])
    assert explanation.runnable
    assert explain(Noop(), []).summary.startswith("No worker is known")


def test_a_command_says_which_program_the_worker_lacks() -> None:
    task = Command()
    task.configure({"command": ["ls"]})
    metadata = {"command:version": Command.TASK_VERSION, "command:available": {"echo": ""}}
    explanation = explain(task, [status(metadata, name="w")])
    assert "'ls'" in explanation.verdicts[0].detail
    assert "--allow-command ls" in explanation.summary
