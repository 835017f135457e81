"""The built-in `noop` task."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.tasks import Noop, Task, TaskConfigError


def configured(data: dict[str, Any]) -> Noop:
    task = Noop()
    task.configure(data)
    return task


def test_noop_succeeds_by_default() -> None:
    assert configured({}).execute() is True


@pytest.mark.parametrize("result", [True, False])
def test_noop_returns_the_requested_result(result: bool) -> None:
    assert configured({"result": result}).execute() is result


def test_noop_sleeps() -> None:
    started = time.monotonic()
    assert configured({"sleep": 0.2}).execute() is True
    assert time.monotonic() - started >= 0.2


def test_noop_stops_promptly_with_false_when_aborted_while_sleeping() -> None:
    task = configured({"sleep": 60})
    threading.Timer(0.1, task.abort).start()
    started = time.monotonic()
    assert task.execute() is False
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("data", "path"),
    [({"sleep": -1}, "$.sleep"), ({"result": "yes"}, "$.result"), ({"other": 1}, "$")],
)
def test_noop_refuses_invalid_data(data: dict[str, Any], path: str) -> None:
    with pytest.raises(TaskConfigError) as caught:
        Noop().configure(data)
    assert [v.field for v in caught.value.violations] == [path]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["result", "sleep", "x"]), json_values))
def test_configure_either_stores_the_data_or_explains_why_not(data: dict[str, Any]) -> None:
    task = Task.class_from_name("noop")()
    violations: tuple[object, ...] = ()
    try:
        task.configure(data)
    except TaskConfigError as error:
        violations = error.violations
    if violations:
        assert task.data is None
    else:
        assert task.data == data
