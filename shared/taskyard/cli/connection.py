"""How client commands reach the scheduler: address, token, stubs, errors."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Protocol

import grpc

from taskyard.cli.errors import INVALID, REFUSED, UNREACHABLE, CliError
from taskyard.errors import InvalidArgumentError
from taskyard.rpc import status as rpc_status
from taskyard.rpc import targets
from taskyard.rpc.credentials import CHANNEL_OPTIONS, bearer_metadata
from taskyard.rpc.tracing import client_interceptors
from taskyard.v1 import artifacts_pb2_grpc, operator_pb2_grpc, work_requests_pb2_grpc

DEFAULT_SCHEDULER = "127.0.0.1:50051"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--scheduler and --token, common to every client command."""
    parser.add_argument(
        "--scheduler",
        default=os.environ.get("TASKYARD_SCHEDULER", DEFAULT_SCHEDULER),
        help="HOST:PORT, or several, comma-separated, of one farm "
        "(default $TASKYARD_SCHEDULER or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("TASKYARD_TOKEN"),
        help="bearer token (default $TASKYARD_TOKEN, else the admin token in the data dir)",
    )
    parser.add_argument("--tls-ca", type=Path, help="verify the scheduler with this CA (PEM)")


def _data_dir() -> Path:
    configured = os.environ.get("TASKYARD_DATA_DIR")
    return Path(configured) if configured else Path.home() / ".local" / "share" / "taskyard"


def resolve_token(explicit: str | None) -> str:
    """The token to use: given, else the scheduler's admin token file."""
    if explicit is not None:
        token = explicit.strip()
        if not token:
            raise CliError("the token is empty: pass --token TOKEN or unset TASKYARD_TOKEN")
        return _checked(token, "--token")
    path = _data_dir() / "admin.token"
    try:
        return _checked(path.read_text(encoding="utf-8").strip(), str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(
            f"no token: pass --token, set TASKYARD_TOKEN, or run where {path} is readable"
        ) from error


def _checked(token: str, source: str) -> str:
    """A token as gRPC metadata can carry it: printable ASCII, no spaces."""
    if not token or not all(33 <= ord(c) < 127 for c in token):
        raise CliError(
            f"the token from {source} has characters no token has (space, CR, non-ASCII)"
        )
    return token


def parse_address(text: str) -> str:
    """HOST:PORT (or several, comma-separated) with ports from 1 to 65535, or
    a one-line error."""
    try:
        targets.split(text)
    except InvalidArgumentError as error:
        raise CliError(f"--scheduler {text!r}: {error.message}") from error
    return text


class Connection:
    """An open channel to the scheduler with the caller's token."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.address = parse_address(args.scheduler)
        self.metadata = bearer_metadata(resolve_token(args.token))
        interceptors = client_interceptors()  # client RPC spans, traceparent sent
        target = targets.channel_target(self.address)
        # Several schedulers: calls safe to repeat go to the next when one goes.
        options = [*CHANNEL_OPTIONS, ("grpc.service_config", targets.SERVICE_CONFIG)]
        if args.tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(args.tls_ca.read_bytes())
            self.channel = grpc.aio.secure_channel(
                target, credentials, options, interceptors=interceptors
            )
        else:
            self.channel = grpc.aio.insecure_channel(target, options, interceptors=interceptors)
        self.work_requests = work_requests_pb2_grpc.WorkRequestServiceStub(self.channel)
        self.operator = operator_pb2_grpc.OperatorServiceStub(self.channel)
        self.artifacts = artifacts_pb2_grpc.ArtifactServiceStub(self.channel)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.channel.close(None)


class Violation(Protocol):
    """A field violation, as the errors module or google.rpc.BadRequest has it."""

    @property
    def field(self) -> str: ...

    @property
    def description(self) -> str: ...


def with_violations(message: str, violations: Iterable[Violation]) -> str:
    """A refusal's message and each field violation, once: the message
    usually says the first already."""
    said = [f"{v.field}: {v.description}" for v in violations if v.description not in message]
    return "; ".join([message, *said])


def cli_error(error: grpc.aio.AioRpcError, address: str) -> CliError:
    """One clear line for a failed call."""
    code = error.code()
    failure = rpc_status.from_rpc_error(error)
    if code == grpc.StatusCode.UNAVAILABLE and failure.reason == "UNAVAILABLE":
        return CliError(
            f"cannot reach the scheduler at {address}: {error.details()}", UNREACHABLE,
            code=code.name, reason="UNREACHABLE",
        )  # fmt: skip
    return CliError(
        with_violations(failure.message, failure.violations),
        INVALID if code == grpc.StatusCode.INVALID_ARGUMENT else REFUSED,
        code=code.name,
        reason=failure.reason,
        violations=failure.violations,
    )


class Resuming:
    """When to open a broken stream again: while the scheduler is away
    (UNAVAILABLE: restarting, or another of the farm not yet reached), for
    up to RECONNECT_FOR seconds since the stream last gave something."""

    #: How long a broken stream is tried again while the scheduler is away.
    RECONNECT_FOR = 60.0

    def __init__(self) -> None:
        self._deadline = 0.0

    def progressed(self) -> None:
        """The stream gave something: the wait starts afresh next time."""
        self._deadline = 0.0

    async def after(self, error: grpc.aio.AioRpcError) -> None:
        """Return after a pause when the stream may be opened again; else
        raise `error`."""
        if error.code() is not grpc.StatusCode.UNAVAILABLE:
            raise error
        self._deadline = self._deadline or time.monotonic() + self.RECONNECT_FOR
        if time.monotonic() > self._deadline:
            raise error
        await asyncio.sleep(0.5)
