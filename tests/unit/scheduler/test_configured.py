"""Configured tasks and matching shapes are computed once per (task, data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.service.configured import configured, shape_of
from taskyard.tasks import Task, TaskConfigError

pytestmark = pytest.mark.usefixtures("isolated_registry")


def _counting_task() -> type[Task]:
    class Counted(Task):
        TASK_VERSION = 1
        TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
        }
        configures: ClassVar[int] = 0

        def configure(self, task_data: dict[str, Any]) -> None:
            type(self).configures += 1
            super().configure(task_data)

        def _execute(self) -> bool:
            return True

    return Counted


def test_one_shape_is_validated_once_and_shared() -> None:
    counted = _counting_task()
    first = configured("counted", '{"n": 1}')
    again = configured("counted", '{"n": 1}')
    other = configured("counted", '{"n": 2}')
    assert first is again
    assert other.data == {"n": 2}
    assert counted.configures == 2  # type: ignore[attr-defined]


def test_empty_data_means_an_empty_object() -> None:
    _counting_task()
    assert configured("counted", "").data == {}


def test_invalid_data_is_refused_every_time() -> None:
    _counting_task()
    for _ in range(2):
        with pytest.raises(TaskConfigError):
            configured("counted", '{"n": "x"}')


def test_a_reassigned_schema_validates_again() -> None:
    counted = _counting_task()
    configured("counted", '{"n": 1}')
    counted.TASK_DATA_SCHEMA = {"type": "object", "properties": {"n": {"type": "string"}}}
    with pytest.raises(TaskConfigError):
        configured("counted", '{"n": 1}')


def _request(task_data_json: str) -> WorkRequest:
    return WorkRequest("wr1", "noop", task_data_json, 0, datetime.now(UTC), "wr1")


def test_a_shape_ignores_key_order_and_empty_data_is_an_empty_object() -> None:
    assert shape_of(_request('{"a": 1, "b": 2}')) == shape_of(_request('{"b":2,"a":1}'))
    assert shape_of(_request("")) == shape_of(_request("{}"))
    assert shape_of(_request('{"a": 1}')) != shape_of(_request('{"a": 2}'))
