"""Registering tasks that live outside Taskyard.

A task is registered when its module is imported. Scheduler, worker and
executor processes import the modules named in TASKYARD_TASK_MODULES
(comma-separated), so all three know the same tasks.
"""

from __future__ import annotations

import importlib
import os

from taskyard.errors import InvalidArgumentError


def import_task_modules(names: str | None = None) -> list[str]:
    """Import the task modules named in `names` (default: TASKYARD_TASK_MODULES)."""
    text = os.environ.get("TASKYARD_TASK_MODULES", "") if names is None else names
    modules = [name.strip() for name in text.split(",") if name.strip()]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise InvalidArgumentError(f"cannot import task module {module!r}: {error}") from error
    return modules
