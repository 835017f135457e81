"""What any task's data may ask of the worker that runs it.

Four top-level keys of every task's data are reserved for it, whatever the
task: `inputs` (artifacts whose files the worker puts in the working
directory's `inputs/` before the task runs: `{"artifact": ID}`, or
`{"request": ID, "category": C}` for what another request produced, which
the scheduler resolves when that request succeeds and records in the item
as `"artifacts": [ID, ...]`),
`environment` (the id of a root-filesystem tarball artifact to run its
programs in), `network` (true: the host's network; by default a task has
only its own loopback) and `limits` (`memory_mb`, `processes`). The Task
base class checks them against `SCHEMA` and keeps them apart from the
task's own data, so a task's TASK_DATA_SCHEMA never sees them.

A worker says what it offers under the `sandbox:` metadata keys below;
`unmet_by()` is the matching rule, and its answer is what `explain` says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskyard.limits import MAX_INPUTS
from taskyard.tasks.schema import compile_schema

RESERVED = ("inputs", "environment", "network", "limits")
ARTIFACT_ID = "^[A-Za-z0-9_-]{1,100}$"

#: The worker's metadata keys: whether its tasks run isolated
#: ("namespaces" or "none"), may have the network, may run in an
#: environment, and the largest limits it grants (None: it enforces none).
ISOLATION = "sandbox:isolation"
NETWORK = "sandbox:network"
ENVIRONMENTS = "sandbox:environments"
MAX_MEMORY_MB = "sandbox:max_memory_mb"
MAX_PROCESSES = "sandbox:max_processes"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "inputs": {
            "type": "array",
            "maxItems": MAX_INPUTS,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["artifact"],
                        "properties": {"artifact": {"type": "string", "pattern": ARTIFACT_ID}},
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["request"],
                        "properties": {
                            "request": {"type": "string", "minLength": 1, "maxLength": 100},
                            "category": {"type": "string", "minLength": 1, "maxLength": 200},
                            "artifacts": {
                                "type": "array",
                                "maxItems": MAX_INPUTS,
                                "items": {"type": "string", "pattern": ARTIFACT_ID},
                            },
                        },
                        "additionalProperties": False,
                    },
                ]
            },
            "description": "artifacts whose files are put in inputs/ before the task runs",
        },
        "environment": {
            "type": "string",
            "pattern": ARTIFACT_ID,
            "description": "id of a root-filesystem tarball artifact the programs run in",
        },
        "network": {
            "type": "boolean",
            "description": "run with the host's network (only on a worker that allows it)",
        },
        "limits": {
            "type": "object",
            "properties": {
                "memory_mb": {"type": "integer", "minimum": 16, "maximum": 16 * 1024 * 1024},
                "processes": {"type": "integer", "minimum": 1, "maximum": 4 * 1024 * 1024},
            },
            "additionalProperties": False,
        },
    },
}
VALIDATOR = compile_schema(SCHEMA)


@dataclass(frozen=True)
class RunOptions:
    """A task's reserved keys, validated."""

    #: Artifact ids: those named, and those resolved from requests.
    inputs: tuple[str, ...] = ()
    environment: str = ""
    network: bool = False
    memory_mb: int | None = None
    processes: int | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> RunOptions:
        """The options in (validated) task data."""
        limits = data.get("limits", {})
        items = data.get("inputs", [])
        return cls(
            inputs=tuple(
                artifact
                for item in items
                for artifact in (
                    [item["artifact"]] if "artifact" in item else item.get("artifacts", [])
                )
            ),
            environment=data.get("environment", ""),
            network=bool(data.get("network", False)),
            memory_mb=limits.get("memory_mb"),
            processes=limits.get("processes"),
        )

    @classmethod
    def named_in(cls, task_data_json: str) -> RunOptions:
        """The options stored task data names, read without checking it (it
        was checked at submit): for the scheduler and the worker, which do
        not configure the task to know them."""
        try:
            data = json.loads(task_data_json or "{}")
            _, reserved = split(data)
            return cls.of(reserved) if not list(VALIDATOR.iter_errors(reserved)) else cls()
        except (ValueError, TypeError, AttributeError):
            return cls()

    @property
    def artifacts(self) -> tuple[str, ...]:
        """Every artifact the task needs from the scheduler: its inputs and
        its environment (a worker may read these for work it holds)."""
        return (*self.inputs, self.environment) if self.environment else self.inputs

    def unmet_by(self, metadata: Mapping[str, Any]) -> str | None:
        """Why a worker with `metadata` cannot run programs as asked; None if it can."""
        if self.network and metadata.get(NETWORK) is not True:
            return "it asks for the network; the worker does not allow it (--allow-network)"
        if self.environment and metadata.get(ENVIRONMENTS) is not True:
            return (
                "it runs in an environment; the worker runs tasks without a sandbox "
                "(--executor process)"
            )
        asked = (
            ("memory", self.memory_mb, MAX_MEMORY_MB, "MB of memory", "--task-memory-mb"),
            ("processes", self.processes, MAX_PROCESSES, "processes", "--task-processes"),
        )
        for what, wanted, key, unit, flag in asked:
            if wanted is None:
                continue
            most = metadata.get(key)
            if not isinstance(most, int):
                return f"it limits its {what}; the worker enforces no limits (--executor process)"
            if wanted > most:
                return f"it asks for {wanted} {unit}; the worker allows at most {most} ({flag})"
        return None


def split(task_data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the task's own data, the reserved keys) of `task_data`."""
    own = {key: value for key, value in task_data.items() if key not in RESERVED}
    reserved = {key: task_data[key] for key in RESERVED if key in task_data}
    return own, reserved
