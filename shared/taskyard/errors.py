"""The Taskyard error hierarchy, grouped by category.

Every error a user can cause or meet is a `TaskyardError` whose category
(the direct subclass it derives from) decides its gRPC status code; the one
table mapping categories to codes lives beside the gRPC code, not here, so the
core stays free of `grpc`. Each error carries a stable machine-readable
`reason` (UPPER_SNAKE_CASE, sent as `google.rpc.ErrorInfo.reason`) and, for
invalid input, field violations (sent as `google.rpc.BadRequest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One way in which an input is invalid: where, and what is wrong."""

    field: str
    description: str


class TaskyardError(Exception):
    """Root of every Taskyard error."""

    #: Default reason of the class; an instance may carry a more precise one.
    default_reason = "TASKYARD_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class InvalidArgumentError(TaskyardError):
    """The input is malformed or fails validation."""

    default_reason = "INVALID_ARGUMENT"


class NotFoundError(TaskyardError):
    """What the request names does not exist."""

    default_reason = "NOT_FOUND"


class AlreadyExistsError(TaskyardError):
    """What the request would create exists already."""

    default_reason = "ALREADY_EXISTS"


class FailedPreconditionError(TaskyardError):
    """The system is not in a state where the request can be carried out."""

    default_reason = "FAILED_PRECONDITION"


class ConflictError(TaskyardError):
    """A concurrent change won; retrying the whole operation may succeed."""

    default_reason = "CONFLICT"


class UnauthenticatedError(TaskyardError):
    """The caller did not prove who it is."""

    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(TaskyardError):
    """The caller is known but may not do this."""

    default_reason = "PERMISSION_DENIED"


class UnavailableError(TaskyardError):
    """A transient failure: the same request may succeed later."""

    default_reason = "UNAVAILABLE"


class ResourceExhaustedError(UnavailableError):
    """A quota or a resource (the disk, a size limit) ran out. Transient like
    UNAVAILABLE (retrying later may succeed), but its own status code."""

    default_reason = "RESOURCE_EXHAUSTED"


#: The categories, each the direct subclass of TaskyardError an error derives from.
CATEGORIES: tuple[type[TaskyardError], ...] = (
    ResourceExhaustedError,  # before UnavailableError, which it refines
    InvalidArgumentError,
    NotFoundError,
    AlreadyExistsError,
    FailedPreconditionError,
    ConflictError,
    UnauthenticatedError,
    PermissionDeniedError,
    UnavailableError,
)


def category_of(error: TaskyardError) -> type[TaskyardError]:
    """Return the category class of `error` (TaskyardError itself if it has none)."""
    for category in CATEGORIES:
        if isinstance(error, category):
            return category
    return TaskyardError


def invalid(field: str, description: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgumentError:
    """An InvalidArgumentError about one field, with its field violation."""
    return InvalidArgumentError(
        f"{field}: {description}", reason=reason, violations=[FieldViolation(field, description)]
    )
