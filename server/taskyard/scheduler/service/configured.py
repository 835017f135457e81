"""What the scheduler derives from a (task, data) pair, computed once per pair:
the configured task, shared read-only across requests, and the matching shape.

`Task.configure()` depends on the task data alone (the Task contract: it runs
on the scheduler and must not touch worker resources), so requests of one
shape are validated once, not once each: the scheduler only reads a
configured task (its data, `can_run_on`). Keyed by the schema object too, so
a schema reassigned at run time is validated again.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from cachetools import LRUCache

from taskyard.limits import MIB
from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.matching import Shape, fingerprint
from taskyard.tasks import Task

#: Bytes the two caches may hold: keyed by task-data text, they are counted
#: by its size (parsed data takes a few times its text), not by entries.
CACHE_BYTES = 32 * MIB
_ENTRY_OVERHEAD = 1000


class _SizedCache:
    """An LRU cache bounded by the estimated bytes of its entries."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: LRUCache[Hashable, tuple[Any, int]] = LRUCache(
            max_bytes, getsizeof=lambda entry: entry[1]
        )

    def get(self, key: Hashable) -> Any:
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        if size <= self._entries.maxsize:  # a larger one is not kept at all
            self._entries[key] = (value, size)


tasks = _SizedCache(CACHE_BYTES)
shapes = _SizedCache(CACHE_BYTES // 4)


def configured(task_name: str, task_data_json: str) -> Task:
    """The task `task_name` configured with `task_data_json` (`{}` when empty).

    Raises UnknownTaskError, json.JSONDecodeError or TaskConfigError.
    Callers must not change the returned task.
    """
    task_class = Task.class_from_name(task_name)
    return _configured(task_class, id(task_class.TASK_DATA_SCHEMA), task_data_json or "{}")


def _configured(task_class: type[Task], schema: int, task_data_json: str) -> Task:
    key = (task_class, schema, task_data_json)
    task: Task | None = tasks.get(key)
    if task is None:
        task = task_class()
        task.configure(json.loads(task_data_json))
        tasks.put(key, task, 4 * len(task_data_json) + _ENTRY_OVERHEAD)
    return task


def shape_of(work_request: WorkRequest) -> Shape:
    """The matching shape of a request: its task and a fingerprint of its data
    (key order does not matter)."""
    return _shape(work_request.task_name, work_request.task_data_json)


def _shape(task_name: str, task_data_json: str) -> Shape:
    key = (task_name, task_data_json)
    shape: Shape | None = shapes.get(key)
    if shape is None:
        shape = Shape(task_name, fingerprint(json.loads(task_data_json or "{}")))
        shapes.put(key, shape, len(task_data_json) + _ENTRY_OVERHEAD)
    return shape
