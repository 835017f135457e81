"""The one table between Taskyard error categories and gRPC status codes.

Server side: `to_status()` turns a TaskyardError into a rich status with a
`google.rpc.ErrorInfo` (stable reason) and, for invalid input, a
`google.rpc.BadRequest` (one field violation each). Client side:
`from_rpc_error()` turns a failed call back into the same TaskyardError class.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from taskyard import errors

DOMAIN = "taskyard.dev"

CODES: dict[type[errors.TaskyardError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ConflictError: grpc.StatusCode.ABORTED,
    errors.UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.TaskyardError: grpc.StatusCode.INTERNAL,
}
CATEGORIES: dict[grpc.StatusCode, type[errors.TaskyardError]] = {
    code: category for category, code in CODES.items()
}
#: Codes a client may retry: the same call may succeed later.
TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
)


def code_of(error: errors.TaskyardError) -> grpc.StatusCode:
    """The gRPC status code of an error's category."""
    return CODES[errors.category_of(error)]


def status_proto(error: errors.TaskyardError) -> status_pb2.Status:
    """The google.rpc.Status of an error, with its details."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    code: int = code_of(error).value[0]
    return status_pb2.Status(code=code, message=error.message, details=details)


def to_status(error: errors.TaskyardError) -> grpc.Status:
    """The grpc.Status to abort a call with."""
    status: grpc.Status = rpc_status.to_status(status_proto(error))
    return status


def internal_status(trace_hint: str = "") -> grpc.Status:
    """The generic status of an unexpected failure; details go to the log only."""
    message = "internal error" + (f" (see the scheduler log, {trace_hint})" if trace_hint else "")
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=message)
    )
    return status


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def from_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> errors.TaskyardError:
    """The TaskyardError a failed call stands for, with reason and violations."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    category = CATEGORIES.get(code, errors.TaskyardError)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        category = errors.UnavailableError
    message = error.details() if hasattr(error, "details") else str(error)
    reason, metadata, violations = code.name if code else "UNKNOWN", {}, []
    for detail in _details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = [
                errors.FieldViolation(v.field, v.description) for v in bad_request.field_violations
            ]
    return category(message or code.name, reason=reason, metadata=metadata, violations=violations)


def _details(error: grpc.RpcError) -> list[any_pb2.Any]:
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    # Sync calls yield _Metadatum(key, value) named tuples, aio calls plain tuples.
    items: list[tuple[str, str | bytes]] = [tuple(item) for item in trailing or ()]  # type: ignore[arg-type, misc]
    for key, value in items:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return list(status_pb2.Status.FromString(value).details)
    return []
