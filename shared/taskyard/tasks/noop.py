"""The `noop` task: does nothing, for tests, demos and benchmarks."""

from __future__ import annotations

from typing import Any, ClassVar

from taskyard.tasks.base import Task


class Noop(Task):
    """Sleep for `sleep` seconds, then return `result`; stop early when aborted."""

    TASK_VERSION = 1
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "result": {"type": "boolean", "default": True, "description": "what to return"},
            "sleep": {
                "type": "number",
                "minimum": 0,
                "default": 0,
                "description": "seconds to sleep first",
            },
        },
        "additionalProperties": False,
    }

    def _execute(self) -> bool:
        data = self.data or {}
        if self.wait_for_abort(data.get("sleep", 0)):
            self.logger.info("aborted while sleeping")
            return False
        return bool(data.get("result", True))
