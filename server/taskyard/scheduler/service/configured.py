"""What the scheduler derives from a (task, data) pair, computed once per pair:
the configured task, shared read-only across requests, and the matching shape.

`Task.configure()` depends on the task data alone (the Task contract: it runs
on the scheduler and must not touch worker resources), so requests of one
shape are validated once, not once each: the scheduler only reads a
configured task (its data, `can_run_on`). Keyed by the schema object too, so
a schema reassigned at run time is validated again.
"""

from __future__ import annotations

import functools
import json

from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.matching import Shape, fingerprint
from taskyard.tasks import Task


def configured(task_name: str, task_data_json: str) -> Task:
    """The task `task_name` configured with `task_data_json` (`{}` when empty).

    Raises UnknownTaskError, json.JSONDecodeError or TaskConfigError.
    Callers must not change the returned task.
    """
    task_class = Task.class_from_name(task_name)
    return _configured(task_class, id(task_class.TASK_DATA_SCHEMA), task_data_json or "{}")


@functools.lru_cache(maxsize=4096)
def _configured(task_class: type[Task], _schema: int, task_data_json: str) -> Task:
    task = task_class()
    task.configure(json.loads(task_data_json))
    return task


def shape_of(work_request: WorkRequest) -> Shape:
    """The matching shape of a request: its task and a fingerprint of its data
    (key order does not matter)."""
    return _shape(work_request.task_name, work_request.task_data_json)


@functools.lru_cache(maxsize=4096)
def _shape(task_name: str, task_data_json: str) -> Shape:
    return Shape(task_name, fingerprint(json.loads(task_data_json or "{}")))
