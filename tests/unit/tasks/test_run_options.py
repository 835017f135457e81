"""The keys every task's data may use to ask things of its sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from taskyard.tasks import Noop, Task, TaskConfigError, TaskDefinitionError
from taskyard.tasks.run_options import RunOptions
from taskyard.tasks.sandbox import UnsafeOutputError, output_file

SANDBOXED = {
    "noop:version": 1,
    "sandbox:isolation": "namespaces",
    "sandbox:network": False,
    "sandbox:environments": True,
    "sandbox:max_memory_mb": 2048,
    "sandbox:max_processes": 100,
}
PLAIN = {**SANDBOXED, "sandbox:isolation": "none", "sandbox:network": True,
         "sandbox:environments": False, "sandbox:max_memory_mb": None,
         "sandbox:max_processes": None}  # fmt: skip


def noop(data: dict[str, Any]) -> Noop:
    task = Noop()
    task.configure(data)
    return task


@pytest.mark.parametrize(
    ("data", "metadata", "why"),
    [
        ({}, SANDBOXED, None),
        ({"network": True}, SANDBOXED, "asks for the network; the worker does not allow it"),
        ({"network": True}, {**SANDBOXED, "sandbox:network": True}, None),
        ({"network": True}, PLAIN, None),
        ({"environment": "e1"}, SANDBOXED, None),
        ({"environment": "e1"}, PLAIN, "runs in an environment; the worker runs tasks without"),
        ({"limits": {"memory_mb": 2048}}, SANDBOXED, None),
        ({"limits": {"memory_mb": 4096}}, SANDBOXED, "asks for 4096 MB of memory; the worker "
         "allows at most 2048 (--task-memory-mb)"),
        ({"limits": {"processes": 101}}, SANDBOXED, "at most 100 (--task-processes)"),
        ({"limits": {"processes": 5}}, PLAIN, "limits its processes; the worker enforces no"),
        ({"network": True}, {"noop:version": 1}, "does not allow it"),  # an older worker
    ],
)  # fmt: skip
def test_what_a_worker_must_offer(
    data: dict[str, Any], metadata: dict[str, Any], why: str | None
) -> None:
    task = noop(data)
    assert task.can_run_on(metadata) is (why is None)
    if why is not None:
        assert why in task.cannot_run_reason(metadata)


def test_reserved_keys_are_checked_apart_from_the_tasks_own_data() -> None:
    task = noop({"sleep": 0, "network": True, "limits": {"memory_mb": 64, "processes": 8}})
    assert task.data == {"sleep": 0}
    assert task.run_options == RunOptions(network=True, memory_mb=64, processes=8)
    with pytest.raises(TaskConfigError) as refused:
        noop({"network": "yes", "limits": {"memory_mb": 1, "cpus": 2}, "sleep": -1})
    fields = sorted(v.field for v in refused.value.violations)
    assert fields == ["$.limits", "$.limits.memory_mb", "$.network", "$.sleep"]


def test_a_task_may_not_declare_a_reserved_key(isolated_registry: dict[str, type[Task]]) -> None:
    with pytest.raises(TaskDefinitionError, match="reserved"):

        class Online(Task):
            TASK_VERSION = 1
            TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {"properties": {"network": {}}}

            def _execute(self) -> bool:
                return True


def test_stored_data_is_read_without_failing() -> None:
    assert RunOptions.named_in('{"environment": "e1", "sleep": 1}').environment == "e1"
    assert RunOptions.named_in('{"environment": 5}') == RunOptions()
    assert RunOptions.named_in("[1]") == RunOptions()
    assert RunOptions.named_in("not json") == RunOptions()


def test_outputs_are_never_read_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("token")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "ok.txt").write_text("fine")
    (work / "link.txt").symlink_to(tmp_path / "secret")
    (work / "up").symlink_to(tmp_path)
    assert output_file(work, "sub/ok.txt") == work / "sub" / "ok.txt"
    assert output_file(work, "missing.txt") is None
    refusals = [("link.txt", "symbolic link"), ("up/secret", "symbolic link"),
                ("sub", "not a regular file"), ("../secret", "not a path inside")]  # fmt: skip
    for name, said in refusals:
        with pytest.raises(UnsafeOutputError, match=said):
            output_file(work, name)
