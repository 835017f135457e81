"""Errors raised by the Task library."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from taskyard.errors import FieldViolation, InvalidArgumentError


class TaskConfigError(InvalidArgumentError):
    """Halt the task due to invalid configuration.

    Raised by `Task.configure()`. `violations` holds one entry per problem,
    each with the JSON path of the offending value (`$.sleep`).
    """

    default_reason = "TASK_DATA_INVALID"

    def __init__(self, task_name: str, violations: Iterable[FieldViolation]) -> None:
        violations = tuple(violations)
        details = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid task data for {task_name!r}: {details}", violations=violations)
        self.task_name = task_name


class UnknownTaskError(InvalidArgumentError, ValueError):
    """No registered task has the requested name."""

    default_reason = "UNKNOWN_TASK"

    def __init__(self, task_name: str, known: Sequence[str]) -> None:
        listing = ", ".join(known) or "none"
        super().__init__(
            f"unknown task {task_name!r}; known tasks: {listing}",
            metadata={"task_name": task_name},
        )
        self.task_name = task_name
        self.known = tuple(known)


class TaskDefinitionError(TypeError, ValueError):
    """A Task subclass is malformed: raised when the class statement runs.

    A programming error, not a user error: a duplicate name, a missing or
    non-integer TASK_VERSION, or a TASK_DATA_SCHEMA that is not valid JSON
    Schema 2020-12. It is a TypeError (the class is unusable) and a ValueError
    (one of its values is wrong), so either `except` clause catches it.
    """
