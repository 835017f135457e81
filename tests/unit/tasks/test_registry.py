"""Registration of Task subclasses and look-up by name."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import pytest

from taskyard.errors import InvalidArgumentError
from taskyard.tasks import Noop, Task, TaskDefinitionError, UnknownTaskError

pytestmark = pytest.mark.usefixtures("isolated_registry")


def test_builtin_tasks_are_registered() -> None:
    assert Task._sub_tasks["noop"] is Noop
    assert "noop" in Task.task_names()


def test_defining_a_concrete_task_registers_it_under_its_lowercase_name() -> None:
    class MyBuild(Task):
        TASK_VERSION = 3

        def _execute(self) -> bool:
            return True

    assert Task._sub_tasks["mybuild"] is MyBuild
    assert MyBuild().name == "mybuild"


def test_task_names_are_sorted() -> None:
    class Zeta(Task):
        TASK_VERSION = 1

        def _execute(self) -> bool:
            return True

    class Alpha(Task):
        TASK_VERSION = 1

        def _execute(self) -> bool:
            return True

    names = Task.task_names()
    assert names == sorted(names)
    assert {"alpha", "zeta", "noop"} <= set(names)


@pytest.mark.parametrize("name", ["noop", "NOOP", "NoOp"])
def test_class_from_name_is_case_insensitive(name: str) -> None:
    assert Task.class_from_name(name) is Noop


def test_class_from_name_of_an_unknown_task_names_it_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as caught:
        Task.class_from_name("frobnicate")
    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, InvalidArgumentError)
    assert error.reason == "UNKNOWN_TASK"
    assert "'frobnicate'" in str(error)
    assert "noop" in str(error)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("noop", True), ("Noop", True), ("NOOP", True), ("nope", False), ("", False)],
)
def test_is_valid_task_name(name: str, valid: bool) -> None:
    assert Task.is_valid_task_name(name) is valid


def test_a_name_taken_case_insensitively_is_refused_at_class_creation() -> None:
    before = dict(Task._sub_tasks)
    with pytest.raises(TaskDefinitionError, match=r"'noop' .* already registered") as caught:

        class NOOP(Task):
            TASK_VERSION = 1

            def _execute(self) -> bool:
                return True

    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ValueError)
    assert Task._sub_tasks == before


def test_abstract_intermediate_classes_are_not_registered() -> None:
    class BuildBase(Task):
        TASK_VERSION = 1

        @abstractmethod
        def command(self) -> list[str]: ...

    class NoExecuteYet(Task):
        pass

    class MakeBuild(BuildBase):
        def command(self) -> list[str]:
            return ["make"]

        def _execute(self) -> bool:
            return True

    assert "buildbase" not in Task._sub_tasks
    assert "noexecuteyet" not in Task._sub_tasks
    assert Task._sub_tasks["makebuild"] is MakeBuild


@pytest.mark.parametrize("version", [None, "1", 1.0, True])
def test_a_concrete_task_must_set_an_integer_version(version: object) -> None:
    with pytest.raises(TaskDefinitionError, match="TASK_VERSION"):

        class Unversioned(Task):
            TASK_VERSION = version  # type: ignore[assignment]

            def _execute(self) -> bool:
                return True

    assert "unversioned" not in Task._sub_tasks


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "no-such-type"},
        {"properties": {"x": {"minimum": "zero"}}},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        ["not", "an", "object"],
    ],
)
def test_an_invalid_data_schema_is_refused_at_class_creation(schema: Any) -> None:
    with pytest.raises(TaskDefinitionError, match="TASK_DATA_SCHEMA"):

        class BadSchema(Task):
            TASK_VERSION = 1
            TASK_DATA_SCHEMA: ClassVar[Any] = schema

            def _execute(self) -> bool:
                return True

    assert "badschema" not in Task._sub_tasks


def test_task_takes_no_arguments() -> None:
    with pytest.raises(TypeError):
        Noop("data")  # type: ignore[call-arg]
