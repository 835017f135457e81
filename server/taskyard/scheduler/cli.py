"""`taskyard scheduler`: run the scheduler, or migrate its database."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging

from sqlalchemy.exc import SQLAlchemyError

from taskyard.cli.errors import CliError
from taskyard.config import load_toml, resolve
from taskyard.errors import TaskyardError
from taskyard.scheduler.config import SchedulerConfig
from taskyard.scheduler.server import serve
from taskyard.scheduler.store.sql import SqlStore
from taskyard.tasks.loading import load_tasks

log = logging.getLogger(__name__)


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
    for problem in load_tasks():  # said, and the other tasks served
        log.warning("%s", problem)
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
