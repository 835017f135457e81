"""Client commands about work requests: submit, get, list, watch, abort,
retry, explain, logs."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc

from taskyard.cli import logs, records
from taskyard.cli.connection import Connection, Resuming, add_connection_arguments, cli_error
from taskyard.cli.errors import CliError
from taskyard.cli.json_arg import parse_json_object
from taskyard.cli.output import describe, one_line, state_name
from taskyard.cli.parsing import Subparsers, int32, moment
from taskyard.v1 import work_requests_pb2 as pb

FINAL = {pb.WORK_REQUEST_STATE_COMPLETED, pb.WORK_REQUEST_STATE_ABORTED}
STATES = ("blocked", "pending", "assigned", "running", "completed", "aborted")
RESULTS = ("success", "failure", "error")


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
    """A client command: connection arguments, `--json`, one-line errors."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts (docs/cli.md)")
    parser.set_defaults(handler=client_command(action))
    return parser


def add_parsers(subparsers: Subparsers) -> None:
    """Register the work-request commands."""
    submit = add_command(subparsers, "submit", "queue a work request; print its id", _submit)
    submit.add_argument("task", help="task name (taskyard tasks lists them)")
    submit.add_argument("--data", default="{}", help="task data: JSON object, or @FILE")
    submit.add_argument("--priority", type=int32, default=0, help="higher runs first (default 0)")
    submit.add_argument("--timeout", type=float, help="execution timeout in seconds")
    submit.add_argument(
        "--idempotency-key", default="", help="resubmitting returns the same request"
    )
    submit.add_argument(
        "--tenant", default="", help="the tenant to submit into (admins; default: the default)"
    )
    submit.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="ID",
        help="wait for this request to succeed (repeatable); aborted if it does not",
    )
    submit.add_argument(
        "--after-done",
        action="append",
        default=[],
        metavar="ID",
        help="wait for this request to end, however it ends (repeatable)",
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
        ("explain", "say why a pending request is not running", _explain),
    ):
        add_command(subparsers, name, help_text, action).add_argument("id", help="work request id")
    for name, help_text, action in (
        ("abort", "abort work requests", _abort),
        ("retry", "start a new attempt of failed, errored or aborted requests", _retry),
    ):
        add_command(subparsers, name, help_text, action).add_argument(
            "ids", nargs="+", metavar="ID", help="work request ids"
        )
    _add_list(subparsers)


def _add_list(subparsers: Subparsers) -> None:
    listing = add_command(subparsers, "list", "list work requests, newest first", _list)
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        choices=STATES,
        help="only in this state (repeatable)",
    )
    listing.add_argument(
        "--result", action="append", default=[], choices=RESULTS, help="only with this result"
    )
    listing.add_argument("--task", default="", help="only this task")
    listing.add_argument("--worker", default="", help="only those run on this worker")
    listing.add_argument("--owner", default="", help="only those submitted by token:ID")
    listing.add_argument("--tenant", default="", help="only this tenant's (admins)")
    listing.add_argument("--since", type=moment, help="submitted at or after (RFC 3339, or 2h, 3d)")
    listing.add_argument("--until", type=moment, help="submitted before (RFC 3339, or 2h, 3d)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--all", action="store_true", help="every matching request, page by page")


async def _submit(connection: Connection, args: argparse.Namespace) -> int:
    data = parse_json_object(args.data, option="--data")
    if args.timeout is not None and args.timeout <= 0:
        raise CliError("--timeout must be more than 0 seconds")
    request = pb.SubmitRequest(
        task_name=args.task,
        task_data_json=json.dumps(data),
        priority=args.priority,
        # Always a key: a submit then is safe to repeat on another scheduler.
        idempotency_key=args.idempotency_key or f"cli-{secrets.token_hex(16)}",
        tenant=args.tenant,
        after=[pb.Dependency(on=i, needs=pb.DEPENDENCY_NEEDS_SUCCESS) for i in args.after]
        + [pb.Dependency(on=i, needs=pb.DEPENDENCY_NEEDS_DONE) for i in args.after_done],
    )
    if args.timeout is not None:
        request.timeout.FromNanoseconds(round(args.timeout * 1e9))
    response = await connection.work_requests.Submit(request, metadata=connection.metadata)
    work_request = response.work_request
    if work_request.state == pb.WORK_REQUEST_STATE_PENDING:
        await _warn_if_unrunnable(connection, work_request.id)
    if not args.wait:
        print(records.dumps(records.work_request(work_request)) if args.json else work_request.id)
        return 0
    print(f"submitted {work_request.id}", file=sys.stderr)
    if args.follow:
        return await logs.follow_to_the_end(connection, work_request.id)
    return await _follow(connection, work_request.id, args.json)


async def _warn_if_unrunnable(connection: Connection, work_request_id: str) -> None:
    """Say at once when no worker could ever run it as things stand (a worker may come)."""
    explained = await connection.work_requests.Explain(
        pb.ExplainRequest(id=work_request_id), metadata=connection.metadata
    )
    if not explained.runnable:
        print(f"taskyard: warning: {explained.summary}", file=sys.stderr)


async def _follow(connection: Connection, work_request_id: str, json_output: bool) -> int:
    """Say each change of the request until it ends; a watch broken by a
    scheduler going away is opened again (it starts with the request as it
    is: nothing is missed)."""
    last: pb.WorkRequest | None = None
    resuming = Resuming()
    while last is None or last.state not in FINAL:
        stream = connection.work_requests.Watch(
            pb.WatchRequest(id=work_request_id), metadata=connection.metadata
        )
        try:
            async for change in stream:
                resuming.progressed()
                if last is None or _said(last) != _said(change.work_request):
                    await _say_change(connection, change.work_request)
                last = change.work_request
            break
        except grpc.aio.AioRpcError as error:
            await resuming.after(error)
    if last is None:
        raise CliError(f"the scheduler ended the watch of {work_request_id} early", 3)
    print(records.dumps(records.work_request(last)) if json_output else describe(last))
    if last.state not in FINAL:
        raise CliError(f"the watch of {work_request_id} ended before it did", 3)
    return 0 if last.result == pb.WORK_REQUEST_RESULT_SUCCESS else 1


def _said(work_request: pb.WorkRequest) -> tuple[int, int, str]:
    return work_request.state, work_request.attempt, work_request.worker_name


async def _say_change(connection: Connection, work_request: pb.WorkRequest) -> None:
    where = f" on {work_request.worker_name}" if work_request.worker_name else ""
    print(f"{work_request.id}: {state_name(work_request)}{where}", file=sys.stderr)
    if work_request.state == pb.WORK_REQUEST_STATE_PENDING:
        await _why_pending(connection, work_request.id)


async def _why_pending(connection: Connection, work_request_id: str) -> None:
    explained = await connection.work_requests.Explain(
        pb.ExplainRequest(id=work_request_id), metadata=connection.metadata
    )
    print(f"  waiting: {explained.summary}", file=sys.stderr)


async def _get(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.Get(
        pb.GetRequest(id=args.id), metadata=connection.metadata
    )
    if args.json:
        found = records.work_request(response.work_request)
        found["artifacts"] = [records.artifact(a) for a in response.artifacts]
        found["after"] = [records.dependency(d) for d in response.after]
        found["dependents"] = list(response.dependents)
        print(records.dumps(found))
        return 0
    print(describe(response.work_request))
    if response.after:
        waits = ", ".join(f"{d.on} ({records.needs(d)})" for d in response.after)
        print(f"after:     {waits}")
    if response.dependents:
        print(f"awaited:   by {', '.join(response.dependents)}")
    for artifact in response.artifacts:
        names = ", ".join(f.path for f in artifact.files)
        print(f"artifact:  {artifact.id} {artifact.category}: {names}")
    return 0


async def _watch(connection: Connection, args: argparse.Namespace) -> int:
    return await _follow(connection, args.id, args.json)


async def _each(
    connection: Connection,
    args: argparse.Namespace,
    call: Callable[[str], Awaitable[pb.WorkRequest]],
    said: Callable[[pb.WorkRequest], str],
) -> int:
    """Do `call` for each id; a failure for one says so and the rest go on."""
    done, failed = [], 0
    for work_request_id in args.ids:
        try:
            work_request = await call(work_request_id)
        except grpc.aio.AioRpcError as error:
            problem = cli_error(error, connection.address)
            if len(args.ids) == 1:
                raise problem from error
            failed += 1
            print(f"taskyard: error: {work_request_id}: {problem.message}", file=sys.stderr)
            continue
        done.append(work_request)
        if not args.json:
            print(said(work_request))
    if args.json:
        print(records.dumps([records.work_request(w) for w in done]))
    return 1 if failed else 0


async def _abort(connection: Connection, args: argparse.Namespace) -> int:
    async def abort(work_request_id: str) -> pb.WorkRequest:
        response = await connection.work_requests.Abort(
            pb.AbortRequest(id=work_request_id), metadata=connection.metadata
        )
        return response.work_request

    def said(work_request: pb.WorkRequest) -> str:
        if work_request.state == pb.WORK_REQUEST_STATE_ABORTED:
            return f"{work_request.id}: aborted"
        return (
            f"{work_request.id}: abort requested; it is {state_name(work_request)} "
            f"until {work_request.worker_name or 'its worker'} stops it"
        )

    return await _each(connection, args, abort, said)


async def _retry(connection: Connection, args: argparse.Namespace) -> int:
    async def retry(work_request_id: str) -> pb.WorkRequest:
        response = await connection.work_requests.Retry(
            pb.RetryRequest(id=work_request_id), metadata=connection.metadata
        )
        return response.work_request

    def said(work_request: pb.WorkRequest) -> str:
        return f"{work_request.id}: pending again (attempt {work_request.attempt})"

    return await _each(connection, args, retry, said)


async def _explain(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.work_requests.Explain(
        pb.ExplainRequest(id=args.id), metadata=connection.metadata
    )
    if args.json:
        print(records.dumps(records.explanation(response)))
        return 0
    print(describe(response.work_request))
    print()
    print(response.summary)
    for verdict in response.workers:
        eligibility = pb.Eligibility.Name(verdict.eligibility).removeprefix("ELIGIBILITY_").lower()
        print(f"  {verdict.worker_name:<20} {eligibility:<18} {verdict.detail}")
    return 0


def _list_request(args: argparse.Namespace, page_size: int, token: str) -> pb.ListRequest:
    request = pb.ListRequest(
        states=[pb.WorkRequestState.Value(f"WORK_REQUEST_STATE_{s.upper()}") for s in args.state],
        results=[
            pb.WorkRequestResult.Value(f"WORK_REQUEST_RESULT_{r.upper()}") for r in args.result
        ],
        task_name=args.task,
        worker_name=args.worker,
        owner=args.owner,
        tenant=args.tenant,
        page_size=page_size,
        page_token=token,
    )
    for field, when in (("created_after", args.since), ("created_before", args.until)):
        if when is not None:
            getattr(request, field).FromDatetime(when.astimezone(UTC).replace(tzinfo=None))
    return request


async def _list(connection: Connection, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    found: list[pb.WorkRequest] = []
    token, more = "", False
    while True:
        wanted = 1000 if args.all else args.limit - len(found)
        response = await connection.work_requests.List(
            _list_request(args, wanted, token), metadata=connection.metadata
        )
        found += response.work_requests
        token = response.next_page_token
        if not token or (not args.all and len(found) >= args.limit):
            more = bool(token)
            break
    if args.json:
        print(records.dumps([records.work_request(w) for w in found]))
    else:
        now = datetime.now(UTC)
        for work_request in found:
            print(one_line(work_request, now))
        if more:
            print(f"(more match: --limit N or --all; {len(found)} shown)", file=sys.stderr)
    return 0
