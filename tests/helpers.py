"""Small helpers shared by the test tiers."""

from __future__ import annotations

from typing import TypeVar

from taskyard.tasks import Task

T = TypeVar("T", bound=type[Task])


def unregistered(task_class: T) -> T:
    """Undo the registration of a module-level test task, so that importing a
    test module changes nothing; tests register it inside `isolated_registry`."""
    Task._sub_tasks.pop(task_class.name, None)
    return task_class
