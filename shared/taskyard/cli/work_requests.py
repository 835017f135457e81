"""Client commands about work requests: submit, get, list, watch, abort, retry, explain."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

import grpc

from taskyard.cli import logs
from taskyard.cli.connection import Connection, add_connection_arguments, cli_error
from taskyard.cli.errors import CliError
from taskyard.cli.json_arg import parse_json_object
from taskyard.cli.output import as_json, describe, one_line, state_name
from taskyard.cli.parsing import Subparsers
from taskyard.v1 import work_requests_pb2 as pb

FINAL = {pb.WORK_REQUEST_STATE_COMPLETED, pb.WORK_REQUEST_STATE_ABORTED}


def client_command(
    action: Callable[[Connection, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    """Run `action` with a connection; failed calls become one clear line."""

    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with Connection(args) as connection:
                try:
                    return await action(connection, args)
                except grpc.aio.AioRpcError as error:
                    raise cli_error(error, connection.address) from error

        return asyncio.run(main())

    return run


def add_command(
    subparsers: Subparsers,
    name: str,
    help_text: str,
    action: Callable[[Connection, argparse.Namespace], Awaitable[int]],
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text)
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=client_command(action))
    return parser


def add_parsers(subparsers: Subparsers) -> None:
    """Register the work-request commands."""
    submit = add_command(subparsers, "submit", "queue a work request", _submit)
    submit.add_argument("task", help="task name")
    submit.add_argument("--data", default="{}", help="task data: JSON object, or @FILE")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    submit.add_argument("--timeout", type=float, help="execution timeout in seconds")
    submit.add_argument(
        "--idempotency-key", default="", help="resubmitting returns the same request"
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow it to the end; exit 1 unless it succeeds"
    )
    submit.add_argument(
        "--follow",
        action="store_true",
        help="with --wait: print its output live; exit with the task's exit status",
    )
    logs.add_arguments(
        add_command(subparsers, "logs", "print a work request's output", logs.logs_command)
    )
    for name, help_text, action in (
        ("get", "show a work request", _get),
        ("watch", "follow a work request until it ends", _watch),
        ("abort", "abort a work request", _abort),
        ("retry", "start a new attempt of a failed or aborted request", _retry),
        ("explain", "say why a pending request is not running", _explain),
    ):
        add_command(subparsers, name, help_text, action).add_argument("id", help="work request id")
    listing = add_command(subparsers, "list", "list work requests, newest first", _list)
    listing.add_argument(
        "--state", action="append", default=[], help="pending, running, ... (repeatable)"
    )
    listing.add_argument("--task", default="", help="only this task")
    listing.add_argument(
        "--owner", default="", help="only requests submitted with this token (token:ID)"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


async def _submit(connection: Connection, args: argparse.Namespace) -> int:
    data = parse_json_object(args.data, option="--data")
    request = pb.SubmitRequest(
        task_name=args.task,
        task_data_json=json.dumps(data),
        priority=args.priority,
        idempotency_key=args.idempotency_key,
    )
    if args.timeout is not None:
        request.timeout.FromNanoseconds(round(args.timeout * 1e9))
    response = await connection.work_requests.Submit(request, metadata=connection.metadata)
    work_request = response.work_request
    if not args.wait:
        print(as_json(work_request) if args.json else work_request.id)
        return 0
    print(f"submitted {work_request.id}", file=sys.stderr)
    if args.follow:
        return await logs.follow_to_the_end(connection, work_request.id)
    return await _follow(connection, work_request.id, args.json)


async def _follow(connection: Connection, work_request_id: str, json_output: bool) -> int:
    last = None
    stream = connection.work_requests.Watch(
        pb.WatchRequest(id=work_request_id), metadata=connection.metadata
    )
    async for change in stream:
        last = change.work_request
        where = f" on {last.worker_name}" if last.worker_name else ""
        print(f"{last.id}: {state_name(last)}{where}", file=sys.stderr)
    if last is None:
        raise CliError(f"the scheduler ended the watch of {work_request_id} early", 3)
    print(as_json(last) if json_output else describe(last))
    if last.state not in FINAL:
        raise CliError(f"the watch of {work_request_id} ended before it did", 3)
    return 0 if last.result == pb.WORK_REQUEST_RESULT_SUCCESS else 1


async def _get(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.Get(
        pb.GetRequest(id=args.id), metadata=connection.metadata
    )
    if args.json:
        print(as_json(response))
        return 0
    print(describe(response.work_request))
    for artifact in response.artifacts:
        names = ", ".join(f.path for f in artifact.files)
        print(f"artifact:  {artifact.id} {artifact.category}: {names}")
    return 0


async def _watch(connection: Connection, args: argparse.Namespace) -> int:
    return await _follow(connection, args.id, args.json)


async def _abort(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.Abort(
        pb.AbortRequest(id=args.id), metadata=connection.metadata
    )
    print(as_json(response.work_request) if args.json else describe(response.work_request))
    return 0


async def _retry(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.Retry(
        pb.RetryRequest(id=args.id), metadata=connection.metadata
    )
    print(as_json(response.work_request) if args.json else describe(response.work_request))
    return 0


async def _explain(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.Explain(
        pb.ExplainRequest(id=args.id), metadata=connection.metadata
    )
    if args.json:
        print(as_json(response))
        return 0
    print(describe(response.work_request))
    print()
    print(response.summary)
    for verdict in response.workers:
        eligibility = pb.Eligibility.Name(verdict.eligibility).removeprefix("ELIGIBILITY_").lower()
        print(f"  {verdict.worker_name:<20} {eligibility:<18} {verdict.detail}")
    return 0


def _state(text: str) -> pb.WorkRequestState.ValueType:
    try:
        return pb.WorkRequestState.Value(f"WORK_REQUEST_STATE_{text.upper()}")
    except ValueError as error:
        raise CliError(
            f"unknown state {text!r}; use pending, assigned, running, completed or aborted"
        ) from error


async def _list(connection: Connection, args: argparse.Namespace) -> int:
    request = pb.ListRequest(
        states=[_state(s) for s in args.state],
        task_name=args.task,
        page_size=args.limit,
        owner=args.owner,
    )
    response = await connection.work_requests.List(request, metadata=connection.metadata)
    if args.json:
        print(as_json(list(response.work_requests)))
    for work_request in [] if args.json else response.work_requests:
        print(one_line(work_request))
    return 0
