"""Operator commands: workers, tasks, tokens."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from taskyard.cli.connection import Connection, add_connection_arguments
from taskyard.cli.json_arg import parse_json_object
from taskyard.cli.output import as_json
from taskyard.cli.parsing import Subparsers
from taskyard.cli.work_requests import client_command
from taskyard.v1 import operator_pb2 as pb

ROLES = {
    "submit": pb.TOKEN_ROLE_SUBMIT,
    "admin": pb.TOKEN_ROLE_ADMIN,
    "worker-activation": pb.TOKEN_ROLE_WORKER_ACTIVATION,
}


def add_parsers(subparsers: Subparsers) -> None:
    """Register `workers`, `tasks` and `token`."""
    workers = subparsers.add_parser("workers", help="list and control workers")
    actions = workers.add_subparsers(required=True, metavar="ACTION")
    listing = _action(actions, "list", "list workers", _list_workers)
    listing.add_argument("--connected", action="store_true", help="only connected workers")
    for name, help_text in (
        ("enable", "let a worker take work"),
        ("disable", "stop giving a worker work"),
    ):
        _action(actions, name, help_text, _toggle_worker).add_argument("name")
    _action(actions, "refresh", "ask a worker to report its metadata again", _refresh).add_argument(
        "name"
    )
    metadata = _action(actions, "set-metadata", "replace a worker's static metadata", _set_metadata)
    metadata.add_argument("name")
    metadata.add_argument("metadata", help="JSON object, or @FILE")
    filters = _action(actions, "set-tasks", "replace a worker's task allow/deny lists", _set_tasks)
    filters.add_argument("name")
    filters.add_argument(
        "--allow", action="append", default=[], help="task it may run (repeatable)"
    )
    filters.add_argument("--deny", action="append", default=[], help="task it must not run")

    tasks = subparsers.add_parser("tasks", help="list tasks with versions and data schemas")
    add_connection_arguments(tasks)
    tasks.add_argument("--json", action="store_true", help="print JSON for scripts")
    tasks.set_defaults(handler=client_command(_tasks))

    token = subparsers.add_parser("token", help="create, list and revoke tokens")
    token_actions = token.add_subparsers(required=True, metavar="ACTION")
    create = _action(
        token_actions, "create", "create a token; prints its secret once", _create_token
    )
    create.add_argument("--role", required=True, choices=sorted(ROLES))
    create.add_argument("--description", default="")
    create.add_argument("--ttl", type=float, help="seconds until it expires")
    _action(token_actions, "list", "list tokens", _list_tokens)
    _action(token_actions, "revoke", "revoke a token", _revoke_token).add_argument("id")


def _action(
    subparsers: Subparsers, name: str, help_text: str, action: object
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text)
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=client_command(action), action_name=name)  # type: ignore[arg-type]
    return parser


def _print_worker(worker: pb.Worker, json_output: bool) -> None:
    if json_output:
        print(as_json(worker))
        return
    state = "enabled" if worker.enabled else "disabled"
    link = "connected" if worker.connected else "offline"
    busy = len(worker.running)
    seen = ""
    if worker.HasField("last_seen_at"):
        ago = (datetime.now(UTC) - worker.last_seen_at.ToDatetime(UTC)).total_seconds()
        seen = f" last seen {max(ago, 0):.0f}s ago"
    print(f"{worker.name:<24} {state:<9} {link:<10} slots={worker.slots} running={busy}{seen}")


async def _list_workers(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.ListWorkers(
        pb.ListWorkersRequest(connected_only=args.connected), metadata=connection.metadata
    )
    if args.json:
        print(as_json(list(response.workers)))
        return 0
    if not response.workers:
        print("no workers registered yet; start one with: taskyard worker")
    for worker in response.workers:
        _print_worker(worker, False)
    return 0


async def _toggle_worker(connection: Connection, args: argparse.Namespace) -> int:
    if args.action_name == "enable":
        enabled = await connection.operator.EnableWorker(
            pb.EnableWorkerRequest(name=args.name), metadata=connection.metadata
        )
        _print_worker(enabled.worker, args.json)
    else:
        disabled = await connection.operator.DisableWorker(
            pb.DisableWorkerRequest(name=args.name), metadata=connection.metadata
        )
        _print_worker(disabled.worker, args.json)
    return 0


async def _refresh(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.RefreshWorkerMetadata(
        pb.RefreshWorkerMetadataRequest(name=args.name), metadata=connection.metadata
    )
    _print_worker(response.worker, args.json)
    return 0


async def _set_metadata(connection: Connection, args: argparse.Namespace) -> int:
    metadata = parse_json_object(args.metadata, option="metadata")
    response = await connection.operator.SetWorkerMetadata(
        pb.SetWorkerMetadataRequest(name=args.name, static_metadata_json=json.dumps(metadata)),
        metadata=connection.metadata,
    )
    _print_worker(response.worker, args.json)
    return 0


async def _set_tasks(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.SetWorkerTaskFilter(
        pb.SetWorkerTaskFilterRequest(
            name=args.name, allowed_tasks=args.allow, denied_tasks=args.deny
        ),
        metadata=connection.metadata,
    )
    _print_worker(response.worker, args.json)
    return 0


async def _tasks(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.ListTasks(
        pb.ListTasksRequest(), metadata=connection.metadata
    )
    if args.json:
        print(as_json(list(response.tasks)))
        return 0
    for task in response.tasks:
        print(f"{task.name} (version {task.version}): {task.description}")
        print(f"  schema: {task.data_schema_json}")
    return 0


async def _create_token(connection: Connection, args: argparse.Namespace) -> int:
    request = pb.CreateTokenRequest(role=ROLES[args.role], description=args.description)
    if args.ttl is not None:
        request.ttl.FromNanoseconds(round(args.ttl * 1e9))
    response = await connection.operator.CreateToken(request, metadata=connection.metadata)
    print(as_json(response) if args.json else response.secret)
    return 0


async def _list_tokens(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.ListTokens(
        pb.ListTokensRequest(), metadata=connection.metadata
    )
    if args.json:
        print(as_json(list(response.tokens)))
        return 0
    for token in response.tokens:
        role = pb.TokenRole.Name(token.role).removeprefix("TOKEN_ROLE_").lower().replace("_", "-")
        print(f"{token.id}  {role:<18} {token.description}")
    return 0


async def _revoke_token(connection: Connection, args: argparse.Namespace) -> int:
    await connection.operator.RevokeToken(
        pb.RevokeTokenRequest(id=args.id), metadata=connection.metadata
    )
    print(f"revoked {args.id}")
    return 0
