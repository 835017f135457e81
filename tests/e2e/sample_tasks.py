"""Tasks for end-to-end tests, loaded with TASKYARD_TASK_MODULES=tests.e2e.sample_tasks.

Environment variables make a process see a different version of a task, as a
worker running other code than its scheduler would.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from taskyard.tasks import Task


class Raiser(Task):
    """Raises an exception."""

    TASK_VERSION = 1

    def _execute(self) -> bool:
        raise RuntimeError("raised on purpose")


class Strict(Task):
    """Requires `x` where SAMPLE_STRICT is set (the worker), not elsewhere."""

    TASK_VERSION = 1
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = (
        {"type": "object", "required": ["x"]} if os.environ.get("SAMPLE_STRICT") else {}
    )

    def _execute(self) -> bool:
        return True


class Drifting(Task):
    """Version 1, or SAMPLE_DRIFTING_VERSION where that is set."""

    TASK_VERSION = int(os.environ.get("SAMPLE_DRIFTING_VERSION", "1"))

    def _execute(self) -> bool:
        return True


class LogsThenRaises(Task):
    """Writes a debug log, then raises."""

    TASK_VERSION = 1

    def _execute(self) -> bool:
        with self.create_debug_log_file("before-the-fall.log") as log:
            log.write("about to raise\n")
        raise RuntimeError("after logging")
