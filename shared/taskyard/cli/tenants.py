"""`taskyard tenants`: the teams sharing a farm, their weights and quotas."""

from __future__ import annotations

import argparse

from taskyard.cli import records
from taskyard.cli.connection import Connection, add_connection_arguments
from taskyard.cli.errors import CliError
from taskyard.cli.parsing import Subparsers
from taskyard.cli.work_requests import client_command
from taskyard.v1 import operator_pb2 as pb


def add_parsers(subparsers: Subparsers) -> None:
    """Register `tenants list` and `tenants set`."""
    tenants = subparsers.add_parser(
        "tenants",
        help="list tenants; set their weights and quotas",
        description="list tenants; set their weights and quotas (admins)",
    )
    actions = tenants.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list tenants, with what they hold now")
    setting = actions.add_parser(
        "set",
        help="create a tenant, or change its weight and quotas",
        description="create a tenant, or change its weight and quotas; "
        "what is not given stays as it is (0 for a quota: no limit)",
    )
    setting.add_argument("name", help="tenant name")
    setting.add_argument("--weight", type=float, help="its weight in the fair share (default 1)")
    setting.add_argument("--max-running", type=int, help="most assigned or running at once")
    setting.add_argument("--max-pending", type=int, help="most waiting at once")
    for parser, handler in ((listing, _list), (setting, _set)):
        add_connection_arguments(parser)
        parser.add_argument("--json", action="store_true", help="print JSON (docs/cli.md)")
        parser.set_defaults(handler=client_command(handler))


def _print(tenant: pb.Tenant) -> None:
    ceiling = tenant.max_running or "-"
    room = tenant.max_pending or "-"
    print(
        f"{tenant.name:<24} weight={tenant.weight:g} running={tenant.running}/{ceiling} "
        f"pending={tenant.pending}/{room}"
    )


async def _list(connection: Connection, args: argparse.Namespace) -> int:
    response = await connection.operator.ListTenants(
        pb.ListTenantsRequest(), metadata=connection.metadata
    )
    if args.json:
        print(records.dumps([records.tenant(t) for t in response.tenants]))
        return 0
    for tenant in response.tenants:
        _print(tenant)
    return 0


async def _set(connection: Connection, args: argparse.Namespace) -> int:
    for option in ("max_running", "max_pending"):
        if (getattr(args, option) or 0) < 0:
            raise CliError(f"--{option.replace('_', '-')} must be 0 (no limit) or more")
    if args.weight is not None and args.weight <= 0:
        raise CliError("--weight must be more than 0")
    listed = await connection.operator.ListTenants(
        pb.ListTenantsRequest(), metadata=connection.metadata
    )
    now = next((t for t in listed.tenants if t.name == args.name), pb.Tenant(weight=1.0))
    request = pb.SetTenantRequest(
        name=args.name,
        weight=now.weight if args.weight is None else args.weight,
        max_running=now.max_running if args.max_running is None else args.max_running,
        max_pending=now.max_pending if args.max_pending is None else args.max_pending,
    )
    response = await connection.operator.SetTenant(request, metadata=connection.metadata)
    if args.json:
        print(records.dumps(records.tenant(response.tenant)))
    else:
        _print(response.tenant)
    return 0
