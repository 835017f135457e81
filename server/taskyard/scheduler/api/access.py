"""Every call passes here: who is calling, may they, and how errors leave.

A server interceptor wraps each handler so that (1) the bearer token becomes a
principal, checked against the method's access rule and made available to the
servicer through `principal()`, and (2) a TaskyardError leaves as its status
code with ErrorInfo/BadRequest details, while anything unexpected leaves as
INTERNAL with a generic message and its traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from taskyard.errors import InvalidArgumentError, TaskyardError
from taskyard.logs import RateLimitedLog
from taskyard.rpc import status as rpc_status
from taskyard.rpc.credentials import bearer_of
from taskyard.rpc.handlers import Continuation, Handler
from taskyard.scheduler.api import validation
from taskyard.scheduler.domain import Role
from taskyard.scheduler.service.auth import (
    Principal,
    WorkerPrincipal,
    require_enabled,
    require_role,
    require_worker,
)
from taskyard.scheduler.service.scheduler import Scheduler

log = logging.getLogger(__name__)
#: A client's mistakes: one line now and then, never a traceback.
_mistakes = RateLimitedLog(log)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class Access(enum.Enum):
    """Who may call a method."""

    PUBLIC = "public"
    WORKER = "worker"
    SUBMIT = "submit"
    ADMIN = "admin"
    WORKER_OR_SUBMIT = "worker-or-submit"


_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("taskyard_principal")

#: Access rule of every Taskyard method; methods not listed (health, reflection) are public.
RULES: dict[str, Access] = {
    "/taskyard.v1.WorkerService/Register": Access.PUBLIC,
    "/taskyard.v1.WorkerService/Session": Access.WORKER,
    "/taskyard.v1.OperatorService/ListTasks": Access.SUBMIT,
}
_SERVICE_RULES = {
    "/taskyard.v1.WorkRequestService/": Access.SUBMIT,
    "/taskyard.v1.OperatorService/": Access.ADMIN,
    "/taskyard.v1.ArtifactService/": Access.WORKER_OR_SUBMIT,
}


def rule_for(method: str) -> Access:
    """The access rule of a full method name."""
    if method in RULES:
        return RULES[method]
    for prefix, access in _SERVICE_RULES.items():
        if method.startswith(prefix):
            return access
    return Access.PUBLIC


def principal() -> Principal:
    """The authenticated caller of the current call."""
    return _PRINCIPAL.get()


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticates, authorizes and maps errors for every Taskyard method."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/taskyard."):
            return handler
        return _wrap(handler, lambda context: self._admit(rule_for(method), context))

    def _admit(self, access: Access, context: Context) -> None:
        if access is Access.PUBLIC:
            return
        caller = self._scheduler.authenticate(bearer_of(context.invocation_metadata()))
        if access is Access.WORKER:
            require_worker(caller)
        elif access is Access.SUBMIT:
            require_role(caller, Role.SUBMIT)
        elif access is Access.ADMIN:
            require_role(caller, Role.ADMIN)
        elif access is Access.WORKER_OR_SUBMIT:
            if isinstance(caller, WorkerPrincipal):
                require_enabled(caller)
            else:
                require_role(caller, Role.SUBMIT)
        _PRINCIPAL.set(caller)


Admit = Callable[[Context], None]


class Undecodable:
    """A request whose bytes did not parse: refused once the caller is admitted."""

    def __init__(self, error: Exception) -> None:
        self.description = f"the request is not a valid message: {error}"


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """`deserializer`, answering bad bytes with Undecodable instead of raising
    (gRPC would fail the call with UNKNOWN and a logged traceback)."""

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data) if deserializer else data
        except Exception as error:
            return Undecodable(error)

    return parse


def checked(request: Any) -> Any:
    """`request` if it decoded and every field is within its limits;
    INVALID_ARGUMENT otherwise."""
    if isinstance(request, Undecodable):
        raise InvalidArgumentError(request.description, reason="UNDECODABLE")
    validation.check(request)
    return request


#: What of a client's stream is read and dropped, at most, after its call
#: has ended early (`_ClientStream.drain`).
DRAIN_MESSAGES = 64
DRAIN_SECONDS = 0.5


class _ClientStream:
    """A client's request stream, checked message by message.

    What the handler leaves unread when it ends early (a refusal) is read
    and dropped, within a bound, before the call ends: a client still
    writing would otherwise have its write fail, and gRPC's asyncio client
    then reports its own INTERNAL instead of the status the scheduler sent.
    """

    def __init__(self, raw: AsyncIterator[Any]) -> None:
        self._raw = aiter(raw)
        self._ended = False

    def __aiter__(self) -> _ClientStream:
        return self

    async def __anext__(self) -> Any:
        try:
            request = await anext(self._raw)
        except StopAsyncIteration:
            self._ended = True
            raise
        return checked(request)

    async def drain(self) -> None:
        """Drop the rest of the stream until the client closes its side, at
        most DRAIN_MESSAGES messages or DRAIN_SECONDS. (A handler that read
        in a task of its own lets that task drain instead of cancelling it:
        a read cancelled midway ends gRPC's request iterator.)"""
        if self._ended:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DRAIN_SECONDS):
                for _ in range(DRAIN_MESSAGES):
                    await anext(self._raw)


def _status_of(error: BaseException) -> grpc.Status:
    """The status `error` stands for (logged when it is not the caller's doing)."""
    if isinstance(error, TaskyardError):
        if isinstance(error, InvalidArgumentError):
            _mistakes.warning(error.reason, "refused a call: %s", error.message[:200])
        return rpc_status.to_status(error)
    log.error("unexpected %s", type(error).__name__, exc_info=error)
    return rpc_status.internal_status()


def _fail(status: grpc.Status, context: Context) -> None:
    """End the call with `status` once the handler returns. Set, not raised
    (`context.abort()` raises an error that gRPC keeps on the call's state,
    whose traceback holds this frame, which holds the call's state: a cycle
    that only a full garbage collection frees, so each refused request, a
    3 MiB one included, stayed in memory until then)."""
    context.set_code(status.code)
    context.set_details(status.details)
    context.set_trailing_metadata(status.trailing_metadata)


def _wrap(handler: Handler, admit: Admit) -> Handler:
    """The same handler, with admission, request checks and error mapping
    around its behaviour."""
    kwargs = {
        "request_deserializer": _tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        call = _unary(handler.unary_unary, admit, client_streams=False)
        return grpc.unary_unary_rpc_method_handler(call, **kwargs)
    if handler.unary_stream:
        stream = _streaming(handler.unary_stream, admit, client_streams=False)
        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    if handler.stream_unary:
        call = _unary(handler.stream_unary, admit, client_streams=True)
        return grpc.stream_unary_rpc_method_handler(call, **kwargs)
    stream = _streaming(handler.stream_stream, admit, client_streams=True)
    return grpc.stream_stream_rpc_method_handler(stream, **kwargs)


def _unary(behaviour: Any, admit: Admit, *, client_streams: bool) -> Any:
    async def call(request: Any, context: Context) -> Any:
        stream = _ClientStream(request) if client_streams else None
        try:
            admit(context)
            return await behaviour(stream or checked(request), context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            status = _status_of(error)
        _fail(status, context)
        if stream is not None:
            await stream.drain()
        return None

    return call


def _streaming(behaviour: Any, admit: Admit, *, client_streams: bool) -> Any:
    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        stream = _ClientStream(request) if client_streams else None
        try:
            admit(context)
            async for response in behaviour(stream or checked(request), context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            _fail(_status_of(error), context)
        if stream is not None:
            await stream.drain()

    return call
