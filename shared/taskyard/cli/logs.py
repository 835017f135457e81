"""`taskyard logs`: a work request's output, live; and `submit --wait --follow`.

The program's stdout goes to stdout and its stderr to stderr, byte for byte;
the task's own log lines and Taskyard's notes go to stderr. A stream broken
by a scheduler that restarts is resumed where it was. Following ends when
the request does, with the task's exit status: a command's own exit code,
128 + the signal that ended it, else 0 for success and 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO

import grpc

from taskyard import logframes
from taskyard.cli.connection import Connection, Resuming
from taskyard.v1 import work_requests_pb2 as pb

FINAL = {pb.WORK_REQUEST_STATE_COMPLETED, pb.WORK_REQUEST_STATE_ABORTED}


def add_arguments(logs: argparse.ArgumentParser) -> None:
    """The arguments of `logs`."""
    logs.add_argument("id", help="work request id")
    logs.add_argument("--attempt", type=int, default=0, help="which attempt (default: the current)")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing until the request ends; exit with the task's exit status",
    )


async def logs_command(connection: Connection, args: argparse.Namespace) -> int:
    """`taskyard logs`."""
    if not args.follow:
        await print_output(connection, args.id, args.attempt, follow=False)
        return 0
    return await follow_to_the_end(connection, args.id, args.attempt)


async def follow_to_the_end(connection: Connection, work_request_id: str, attempt: int = 0) -> int:
    """Print each attempt's output as it comes until the request has ended;
    return the task's exit status."""
    while True:
        followed = await print_output(connection, work_request_id, attempt, follow=True)
        current = await _settled(connection, work_request_id, followed)
        if current.state in FINAL:
            return exit_status(current)
        attempt = current.attempt  # requeued: the next attempt's output follows


async def _settled(connection: Connection, work_request_id: str, attempt: int) -> pb.WorkRequest:
    """The request once it has ended, or moved past `attempt` (its output can
    end a moment before its result is recorded)."""
    stream = connection.work_requests.Watch(
        pb.WatchRequest(id=work_request_id), metadata=connection.metadata
    )
    last: pb.WorkRequest | None = None
    async for change in stream:
        last = change.work_request
        if last.state in FINAL or last.attempt > attempt:
            stream.cancel()
            break
    return last if last is not None else await _get(connection, work_request_id)


async def _get(connection: Connection, work_request_id: str) -> pb.WorkRequest:
    response = await connection.work_requests.Get(
        pb.GetRequest(id=work_request_id), metadata=connection.metadata
    )
    return response.work_request


async def print_output(
    connection: Connection, work_request_id: str, attempt: int, *, follow: bool
) -> int:
    """Print an attempt's output from its start; return the attempt printed."""
    offset, printed, resuming = 0, attempt, Resuming()
    while True:
        request = pb.LogsRequest(id=work_request_id, attempt=attempt, offset=offset, follow=follow)
        try:
            async for chunk in connection.work_requests.Logs(request, metadata=connection.metadata):
                _write(chunk)
                offset, printed = chunk.next_offset, chunk.attempt
                attempt = attempt or chunk.attempt  # resume the same attempt
                resuming.progressed()
            return printed or (await _get(connection, work_request_id)).attempt
        except grpc.aio.AioRpcError as error:
            await resuming.after(error)  # the scheduler is away: resume where we were


def _write(chunk: pb.LogsResponse) -> None:
    target: IO[bytes] = sys.stdout.buffer if chunk.stream == logframes.STDOUT else sys.stderr.buffer
    target.write(chunk.data)
    target.flush()


def exit_status(work_request: pb.WorkRequest) -> int:
    """The task's exit status: a command's exit code, 128 + the signal that
    ended it, else 0 for success and 1 for anything else."""
    details = json.loads(work_request.details_json or "{}")
    if isinstance(details.get("exit_code"), int):
        return int(details["exit_code"]) & 0xFF
    if isinstance(details.get("signal_number"), int):
        return 128 + int(details["signal_number"])
    return 0 if work_request.result == pb.WORK_REQUEST_RESULT_SUCCESS else 1
