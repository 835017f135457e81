"""Errors to gRPC status with details, and back."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from taskyard import errors
from taskyard.rpc import status as rpc_status
from taskyard.tasks import TaskConfigError


class FakeRpcError(grpc.RpcError):
    """What a failed call looks like to a client."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata


@pytest.mark.parametrize(
    ("category", "code"),
    [
        (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ConflictError, grpc.StatusCode.ABORTED),
        (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
        (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_every_category_round_trips(
    category: type[errors.TaskyardError], code: grpc.StatusCode
) -> None:
    error = category(
        "what happened",
        reason="SOME_REASON",
        metadata={"id": "x"},
        violations=[errors.FieldViolation("task_data_json.sleep", "too small")],
    )
    status = rpc_status.to_status(error)
    assert status.code == code
    back = rpc_status.from_rpc_error(FakeRpcError(status))
    assert type(back) is category
    assert (back.message, back.reason, back.metadata) == (
        "what happened",
        "SOME_REASON",
        {"id": "x"},
    )
    assert back.violations == error.violations


def test_subclasses_map_through_their_category() -> None:
    error = TaskConfigError("noop", [errors.FieldViolation("$.sleep", "bad")])
    assert rpc_status.code_of(error) == grpc.StatusCode.INVALID_ARGUMENT


def test_unexpected_errors_say_nothing_about_their_cause() -> None:
    status = rpc_status.internal_status()
    assert status.code == grpc.StatusCode.INTERNAL
    assert status.details == "internal error"
