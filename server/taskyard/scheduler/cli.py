"""`taskyard scheduler`: run the scheduler, or migrate its database."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from taskyard.cli.errors import CliError
from taskyard.cli.parsing import Subparsers
from taskyard.config import load_toml, resolve
from taskyard.errors import TaskyardError
from taskyard.scheduler.config import SchedulerConfig
from taskyard.scheduler.server import serve
from taskyard.scheduler.store.sql import SqlStore
from taskyard.tasks.loading import import_task_modules

log = logging.getLogger(__name__)


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
    parser.set_defaults(handler=run, service_name="taskyard-scheduler", prometheus=serves_http)


#: Net allocations between collections of the youngest generation.
YOUNG_THRESHOLD = 50_000

#: Arguments that are not settings.
IGNORED = {
    "handler",
    "config",
    "otlp_endpoint",
    "service_name",
    "prometheus",
    "verbose",
    "log_format",
}


def config_from(args: argparse.Namespace) -> SchedulerConfig:
    """The configuration: flags over TASKYARD_* over the TOML file over defaults."""
    flags = {key: value for key, value in vars(args).items() if key not in IGNORED}
    return resolve(SchedulerConfig, flags, load_toml(args.config, "scheduler"))


def serves_http(args: argparse.Namespace) -> bool:
    """Whether this run serves `/metrics` (then telemetry keeps metrics for
    it). Settings that cannot be read are said by `run`, not here."""
    if args.action != "serve":
        return False
    try:
        return bool(config_from(args).http)
    except (CliError, TaskyardError):
        return False


def run(args: argparse.Namespace) -> int:
    """Serve until stopped, or migrate; a database that cannot be used is one line."""
    config = config_from(args)
    try:
        return _run(args, config)
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise CliError(f"cannot use the database {config.database_url()}: {cause}", 1) from error


def _run(args: argparse.Namespace, config: SchedulerConfig) -> int:
    import_task_modules()
    if args.action == "migrate":
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = SqlStore(config.database_url())
        store.migrate()
        store.close()
        print(f"database {config.database_url()} is at the newest schema")
        return 0
    # Everything imported so far lives as long as the process. Frozen, the
    # garbage collector's full passes stop walking it again and again: with
    # the SDK and exporters loaded, those passes cost a traced scheduler
    # about a fifth of its throughput.
    gc.freeze()
    # Nearly every object a request makes is freed by its reference count
    # within milliseconds; only cycles need the collector. At the default
    # threshold (700) collections kept catching those objects alive, above
    # all finished spans waiting for export, and promoting them, which set
    # off full passes: 20 us of collection per request untraced and 40 us
    # traced. Past 50,000 allocations the young objects are mostly gone.
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    asyncio.run(serve(config))
    return 0
