"""Finding the tasks that live outside Taskyard.

A distribution declares its tasks in the `taskyard.tasks` entry-point group
of its `pyproject.toml`, one entry per task class, named as the task:

    [project.entry-points."taskyard.tasks"]
    greet = "mypackage.tasks:Greet"

The scheduler, the workers (and their executors) and `taskyard run-local`
load every installed one, then the modules named in TASKYARD_TASK_MODULES
(comma-separated, for quick experiments): importing a task's module
registers it. A task that cannot be loaded (its import fails, its name is
taken, its entry names another class) is a `Problem`, said in one line; the
other tasks load all the same.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from taskyard.tasks.base import Task

GROUP = "taskyard.tasks"
MODULES_ENV = "TASKYARD_TASK_MODULES"

#: Where each loaded task came from: `package version` or `module NAME`.
ORIGINS: dict[str, str] = {}


@dataclass(frozen=True)
class Problem:
    """A task that could not be loaded."""

    source: str  # the distribution, or TASKYARD_TASK_MODULES
    reason: str

    def __str__(self) -> str:
        return f"tasks of {self.source}: {self.reason}"


def origin_of(task_name: str) -> str:
    """Where a registered task came from (the built-in ones: Taskyard)."""
    if task_name in ORIGINS:
        return ORIGINS[task_name]
    module = Task.class_from_name(task_name).__module__
    return "taskyard (built in)" if module.startswith("taskyard.") else f"module {module}"


def load_tasks(modules: str | None = None) -> list[Problem]:
    """Load the installed tasks and those of `modules` (default:
    TASKYARD_TASK_MODULES); the problems, one per task that did not load."""
    problems = _from_entry_points()
    text = os.environ.get(MODULES_ENV, "") if modules is None else modules
    for name in (module.strip() for module in text.split(",")):
        if not name:
            continue
        before = set(Task.task_names())
        try:
            importlib.import_module(name)
        except Exception as error:
            problems.append(Problem(MODULES_ENV, f"cannot import {name}: {_said(error)}"))
            continue
        for task_name in set(Task.task_names()) - before:
            ORIGINS[task_name] = f"module {name}"
    return problems


def _from_entry_points() -> list[Problem]:
    from importlib.metadata import entry_points  # noqa: PLC0415

    problems = []
    for entry in entry_points(group=GROUP):
        source = f"{entry.dist.name} {entry.dist.version}" if entry.dist else entry.value
        try:
            loaded = entry.load()
        except Exception as error:
            said = f"cannot load {entry.name} = {entry.value}: {_said(error)}"
            problems.append(Problem(source, said))
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Task)):
            problems.append(Problem(source, f"{entry.name} = {entry.value} is not a Task class"))
        else:
            ORIGINS[loaded.name] = source
            if loaded.name != entry.name:
                problems.append(Problem(
                    source, f"{entry.name} = {entry.value} is the task {loaded.name!r}: "
                    "name the entry as its task",
                ))  # fmt: skip
    return problems


def _said(error: Exception) -> str:
    """An error in one line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
