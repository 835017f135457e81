"""The scheduler's commands for the `taskyard` command line (the
`taskyard.commands` entry point): their arguments only. What runs them is
imported when one runs, so other commands never load the scheduler."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from taskyard.cli.parsing import Subparsers

# Alembic logs each of its plugins at INFO as it is imported, which happens
# once logging is set up: only its warnings are worth a line.
logging.getLogger("alembic").setLevel(logging.WARNING)


def add_parser(subparsers: Subparsers) -> None:
    """Register the `scheduler` subcommand."""
    parser = subparsers.add_parser(
        "scheduler",
        help="run the scheduler (gRPC server)",
        description="run the scheduler (gRPC server), or migrate its database",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=["serve", "migrate"],
        default="serve",
        help="serve (default), or migrate the database and exit",
    )
    parser.add_argument("--listen", help="address to listen on (default 127.0.0.1:50051)")
    parser.add_argument("--data-dir", type=Path, help="default ~/.local/share/taskyard")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the data dir)")
    parser.add_argument(
        "--blob-dir",
        help="artifact contents and task logs (default: the data dir); several schedulers "
        "of one PostgreSQL database share one, on a shared filesystem",
    )
    parser.add_argument(
        "--leader-ttl",
        type=float,
        help="seconds the maintenance lease lasts unrenewed: how soon another scheduler of "
        "the same database takes over (default 5)",
    )
    parser.add_argument(
        "--auto-enable-workers",
        action="store_const",
        const=True,
        help="enable newly registered workers without an operator",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain of the server")
    parser.add_argument("--tls-key", help="PEM private key of the server")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    parser.add_argument("--heartbeat-interval", type=float, help="seconds (default 10)")
    parser.add_argument("--lease-grace", type=float, help="seconds (default 30)")
    parser.add_argument("--max-attempts", type=int, help="default attempts per request (3)")
    parser.add_argument(
        "--upload-quota", type=int, help="bytes of unfinished uploads per caller (10 GiB)"
    )
    parser.add_argument(
        "--partial-upload-max-age",
        type=float,
        help="seconds an upload may go without progress before it is removed (3600)",
    )
    parser.add_argument(
        "--log-cap", type=int, help="bytes of each attempt's live log kept (64 MiB)"
    )
    parser.add_argument(
        "--keep-days",
        type=float,
        help="days finished requests, their logs and artifacts are kept (30; 0: forever)",
    )
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the status page and Prometheus /metrics here (off by default)",
    )
    parser.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        help="link trace ids on the status page: a URL with {trace_id} in it",
    )
    parser.add_argument("--config", type=Path, help="TOML file with a [scheduler] table")
    parser.add_argument(
        "--otlp-endpoint", help="export telemetry here (OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    parser.set_defaults(handler=_run, service_name="taskyard-scheduler", prometheus=_serves_http)


def _run(args: argparse.Namespace) -> int:
    from taskyard.scheduler.cli import run  # noqa: PLC0415

    return run(args)


def _serves_http(args: argparse.Namespace) -> bool:
    from taskyard.scheduler.cli import serves_http  # noqa: PLC0415

    return serves_http(args)
