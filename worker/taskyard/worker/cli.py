"""`taskyard worker`: run a worker daemon until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from taskyard.cli.parsing import Subparsers
from taskyard.config import load_toml, resolve
from taskyard.tasks.command import ALLOWED_ENV
from taskyard.tasks.loading import import_task_modules
from taskyard.worker.agent import Agent
from taskyard.worker.client import SchedulerClient, open_channel
from taskyard.worker.config import WorkerConfig
from taskyard.worker.identity import load_or_create_token
from taskyard.worker.outbox import Outbox
from taskyard.worker.runner import TaskRunner

log = logging.getLogger(__name__)


def add_parser(subparsers: Subparsers) -> None:
    """Register the `worker` subcommand."""
    parser = subparsers.add_parser(
        "worker",
        help="run a worker daemon",
        description="run a worker daemon: register, take work, run it isolated, report it",
    )
    parser.add_argument("--scheduler", help="HOST:PORT (default 127.0.0.1:50051)")
    parser.add_argument("--name", help="worker name (default: host name)")
    parser.add_argument("--data-dir", type=Path, help="default ~/.local/share/taskyard-worker")
    parser.add_argument("--slots", type=int, help="tasks run at once (default 1)")
    parser.add_argument("--tls-ca", help="verify the scheduler with this CA (PEM)")
    parser.add_argument("--activation-token-file", help="single-use token that enables the worker")
    parser.add_argument(
        "--allow-command",
        dest="allowed_commands",
        action="append",
        help="program the command task may run (repeatable)",
    )
    parser.add_argument("--drain-timeout", type=float, help="seconds (default 60)")
    parser.add_argument("--config", type=Path, help="TOML file with a [worker] table")
    parser.add_argument(
        "--otlp-endpoint", help="export telemetry here (OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    parser.set_defaults(handler=run, service_name="taskyard-worker")


#: Arguments that are not settings.
IGNORED = {"handler", "config", "otlp_endpoint", "service_name", "verbose", "log_format"}


def config_from(args: argparse.Namespace) -> WorkerConfig:
    """The configuration: flags over TASKYARD_* over the TOML file over defaults."""
    flags = {key: value for key, value in vars(args).items() if key not in IGNORED}
    return resolve(WorkerConfig, flags, load_toml(args.config, "worker"))


async def serve(config: WorkerConfig) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    token = load_or_create_token(config.data_dir)
    client = SchedulerClient(open_channel(config.scheduler, config.tls_ca))
    runner = TaskRunner(
        config.slots, abort_grace=config.abort_grace, scratch=config.data_dir / "scratch"
    )
    agent = Agent(config, client, runner, Outbox(config.data_dir / "results"), token)
    try:
        await agent.run(stop)
    finally:
        await client.close()
    log.info("worker %s stopped", agent.name)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped."""
    config = config_from(args)
    # The command task and the executors read these.
    os.environ[ALLOWED_ENV] = ",".join(config.allowed_commands)
    import_task_modules()
    asyncio.run(serve(config))
    return 0
