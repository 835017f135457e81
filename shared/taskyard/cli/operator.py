"""Operator commands: workers, tasks, tokens (tenants: `taskyard.cli.tenants`)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from taskyard.cli import records
from taskyard.cli.connection import Connection, add_connection_arguments
from taskyard.cli.errors import CliError
from taskyard.cli.json_arg import parse_json_object
from taskyard.cli.parsing import Subparsers, seconds
from taskyard.cli.work_requests import client_command
from taskyard.v1 import operator_pb2 as pb

WORKER = "worker name (taskyard workers list)"
ROLES = {
    "submit": pb.TOKEN_ROLE_SUBMIT,
    "admin": pb.TOKEN_ROLE_ADMIN,
    "worker-activation": pb.TOKEN_ROLE_WORKER_ACTIVATION,
}


def add_parsers(subparsers: Subparsers) -> None:
    """Register `workers`, `tasks` and `token`."""
    workers = subparsers.add_parser(
        "workers", help="list and control workers", description="list and control workers"
    )
    actions = workers.add_subparsers(required=True, metavar="ACTION")
    listing = _action(actions, "list", "list workers", _list_workers)
    listing.add_argument("--connected", action="store_true", help="only connected workers")
    for name, help_text in (
        ("enable", "let a worker take work"),
        ("disable", "stop giving a worker work"),
    ):
        _action(actions, name, help_text, _toggle_worker).add_argument("name", help=WORKER)
    refresh = _action(actions, "refresh", "ask a worker to report its metadata again", _refresh)
    refresh.add_argument("name", help=WORKER)
    remove = _action(actions, "remove", "forget a worker that is gone for good", _remove)
    remove.add_argument("name", help=WORKER)
    metadata = _action(actions, "set-metadata", "replace a worker's static metadata", _set_metadata)
    metadata.add_argument("name", help=WORKER)
    metadata.add_argument("metadata", help="JSON object, or @FILE")
    filters = _action(actions, "set-tasks", "replace a worker's task allow/deny lists", _set_tasks)
    filters.add_argument("name", help=WORKER)
    filters.add_argument(
        "--allow", action="append", default=[], help="task it may run (repeatable)"
    )
    filters.add_argument("--deny", action="append", default=[], help="task it must not run")
    reserve = _action(
        actions, "reserve", "reserve a worker for some tenants (none: every tenant)", _reserve
    )
    reserve.add_argument("name", help=WORKER)
    reserve.add_argument("tenants", nargs="*", help="tenants it takes work from")

    tasks = subparsers.add_parser(
        "tasks",
        help="list tasks with versions and data schemas",
        description="list tasks with versions and data schemas",
    )
    add_connection_arguments(tasks)
    tasks.add_argument("--json", action="store_true", help="print JSON for scripts")
    tasks.set_defaults(handler=client_command(_tasks))

    prune = subparsers.add_parser(
        "prune",
        help="delete finished requests older than an age, with their logs and artifacts",
        description="delete finished requests older than an age, with their logs and artifacts"
        " (the scheduler does it by itself after --keep-days)",
    )
    add_connection_arguments(prune)
    prune.add_argument("--json", action="store_true", help="print JSON for scripts (docs/cli.md)")
    prune.add_argument("--older-than", type=seconds, required=True, help="age: 3600, 12h, 30d")
    prune.set_defaults(handler=client_command(_prune))

    token = subparsers.add_parser(
        "token", help="create, list and revoke tokens", description="create, list and revoke tokens"
    )
    token_actions = token.add_subparsers(required=True, metavar="ACTION")
    create = _action(
        token_actions, "create", "create a token; prints its secret once", _create_token
    )
    create.add_argument("--role", required=True, choices=sorted(ROLES), help="what it allows")
    create.add_argument("--description", default="", help="what it is for")
    create.add_argument("--ttl", type=seconds, help="how long it lasts: 3600, 30m, 12h, 90d")
    create.add_argument(
        "--tenant", default="", help="a submit token's tenant (default: the default tenant)"
    )
    _action(token_actions, "list", "list tokens, with their state", _list_tokens)
    revoke = _action(token_actions, "revoke", "revoke a token", _revoke_token)
    revoke.add_argument("id", help="token id (taskyard token list)")


def _action(
    subparsers: Subparsers, name: str, help_text: str, action: object
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts (docs/cli.md)")
    parser.set_defaults(handler=client_command(action), action_name=name)  # type: ignore[arg-type]
    return parser


def _print_worker(worker: pb.Worker, json_output: bool) -> None:
    if json_output:
        print(records.dumps(records.worker(worker)))
        return
    state = "enabled" if worker.enabled else "disabled"
    link = "connected" if worker.connected else "offline"
    busy = len(worker.running)
    seen = ""
    if worker.HasField("last_seen_at"):
        ago = (datetime.now(UTC) - worker.last_seen_at.ToDatetime(UTC)).total_seconds()
        seen = f" last seen {max(ago, 0):.0f}s ago"
    where = f" on {worker.scheduler}" if worker.scheduler else ""
    only = f" for {','.join(worker.tenants)}" if worker.tenants else ""
    print(
        f"{worker.name:<24} {state:<9} {link:<10} slots={worker.slots} running={busy}{seen}"
        f"{where}{only}"
    )


async def _list_workers(connection: Connection, args: argparse.Namespace) -> int:
    found: list[pb.Worker] = []
    token = ""
    while True:  # every page
        response = await connection.operator.ListWorkers(
            pb.ListWorkersRequest(connected_only=args.connected, page_size=1000, page_token=token),
            metadata=connection.metadata,
        )
        found += response.workers
        token = response.next_page_token
        if not token:
            break
    if args.json:
        print(records.dumps([records.worker(w) for w in found]))
        return 0
    if not found:
        print("no workers registered yet; start one with: taskyard worker")
    for worker in found:
        _print_worker(worker, False)
    return 0


async def _remove(connection: Connection, args: argparse.Namespace) -> int:
    await connection.operator.RemoveWorker(
        pb.RemoveWorkerRequest(name=args.name), metadata=connection.metadata
    )
    print(records.dumps({"removed": args.name}) if args.json else f"removed worker {args.name}")
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


async def _reserve(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.SetWorkerTenants(
        pb.SetWorkerTenantsRequest(name=args.name, tenants=args.tenants),
        metadata=connection.metadata,
    )
    _print_worker(response.worker, args.json)
    return 0


async def _prune(connection: Connection, args: argparse.Namespace) -> int:
    if args.older_than <= 0:
        raise CliError("--older-than must be more than 0")
    request = pb.PruneRequest()
    request.older_than.FromNanoseconds(round(args.older_than * 1e9))
    pruned = await connection.operator.Prune(request, metadata=connection.metadata)
    counts = {
        "work_requests": pruned.work_requests,
        "artifacts": pruned.artifacts,
        "blobs": pruned.blobs,
    }
    if args.json:
        print(records.dumps(counts))
    else:
        print(", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items()) + " deleted")
    return 0


async def _tasks(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.ListTasks(
        pb.ListTasksRequest(), metadata=connection.metadata
    )
    if args.json:
        print(records.dumps([records.task(t) for t in response.tasks]))
        return 0
    for task in response.tasks:
        print(f"{task.name}  version {task.version}  from {task.package}")
        if task.description:
            print(f"  {task.description}")
        print(f"  data: {schema_summary(json.loads(task.data_schema_json or '{}'))}")
    return 0


def schema_summary(schema: dict[str, Any]) -> str:
    """A task data schema in a line: each property, its type, `*` if required."""
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not properties:
        return "any JSON object" if schema.get("additionalProperties", True) else "{}"
    required = set(schema.get("required", []))
    parts = []
    for name, spec in properties.items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        kinds = "|".join(kind) if isinstance(kind, list) else str(kind)
        parts.append(f"{name}{'*' if name in required else ''} ({kinds})")
    return ", ".join(parts) + "  (* required)" if required else ", ".join(parts)


async def _create_token(connection: Connection, args: argparse.Namespace) -> int:
    if args.ttl is not None and args.ttl <= 0:
        raise CliError("--ttl must be more than 0 seconds")
    request = pb.CreateTokenRequest(
        role=ROLES[args.role], description=args.description, tenant=args.tenant
    )
    if args.ttl is not None:
        request.ttl.FromNanoseconds(round(args.ttl * 1e9))
    response = await connection.operator.CreateToken(request, metadata=connection.metadata)
    if args.json:
        print(records.dumps({**records.token(response.token), "secret": response.secret}))
        return 0
    print(f"id:     {response.token.id} (to revoke it: taskyard token revoke {response.token.id})")
    print(f"secret: {response.secret}")
    return 0


async def _list_tokens(connection: Connection, args: argparse.Namespace) -> int:
    found: list[pb.Token] = []
    token = ""
    while True:
        response = await connection.operator.ListTokens(
            pb.ListTokensRequest(page_size=1000, page_token=token), metadata=connection.metadata
        )
        found += response.tokens
        token = response.next_page_token
        if not token:
            break
    if args.json:
        print(records.dumps([records.token(t) for t in found]))
        return 0
    for item in found:
        tenant = f"[{item.tenant}] " if item.tenant else ""
        print(
            f"{item.id}  {records.role(item.role):<18} {records.token_state(item):<8} "
            f"{tenant}{item.description}"
        )
    return 0


async def _revoke_token(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.RevokeToken(
        pb.RevokeTokenRequest(id=args.id), metadata=connection.metadata
    )
    print(records.dumps(records.token(response.token)) if args.json else f"revoked {args.id}")
    return 0
