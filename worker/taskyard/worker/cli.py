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
from taskyard.errors import InvalidArgumentError
from taskyard.tasks.command import ALLOWED_ENV, TASK_PATH_ENV
from taskyard.tasks.loading import import_task_modules
from taskyard.worker.agent import Agent
from taskyard.worker.client import SchedulerClient, open_channel
from taskyard.worker.config import WorkerConfig
from taskyard.worker.identity import load_or_create_token
from taskyard.worker.outbox import Outbox
from taskyard.worker.runner import TaskRunner
from taskyard.worker.sandbox import limits, probe
from taskyard.worker.sandbox.settings import PROCESS, SANDBOX, TASK_PATH, SandboxSettings

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
    parser.add_argument(
        "--executor",
        choices=["sandbox", "process"],
        help="run tasks' programs in a sandbox of their own (default; needs bubblewrap) "
        "or as plain processes of this user (a trusted farm only)",
    )
    parser.add_argument(
        "--allow-network",
        action="store_true",
        default=None,
        help='let tasks that ask for it ("network": true) use the host\'s network',
    )
    parser.add_argument(
        "--task-memory-mb",
        type=int,
        help="a task's memory limit, and the most it may ask for (default: memory / slots)",
    )
    parser.add_argument(
        "--task-processes",
        type=int,
        help="a task's limit of processes and threads, and the most it may ask for (1024)",
    )
    parser.add_argument(
        "--environment-cache-mb", type=int, help="unpacked environments kept (default 4096)"
    )
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
    settings = sandbox_settings(config)
    client = SchedulerClient(open_channel(config.scheduler, config.tls_ca))
    runner = TaskRunner(
        config.slots,
        abort_grace=config.abort_grace,
        scratch=config.data_dir / "scratch",
        settings=settings,
    )
    agent = Agent(config, client, runner, Outbox(config.data_dir / "results"), token)
    try:
        await agent.run(stop)
    finally:
        await client.close()
        limits.forget(settings.limiter)
    log.info("worker %s stopped", agent.name)


def sandbox_settings(config: WorkerConfig) -> SandboxSettings:
    """How tasks' programs run here, checked by starting one; the command
    task looks its programs up on the PATH they will get."""
    for name, value in (("--task-memory-mb", config.task_memory_mb),
                        ("--task-processes", config.task_processes)):  # fmt: skip
        if value < 0:
            raise InvalidArgumentError(f"{name} must be a positive number, not {value}")
    if config.executor not in (SANDBOX, PROCESS):
        raise InvalidArgumentError(f"the executor is sandbox or process, not {config.executor!r}")
    settings = probe.settle(
        config.executor,
        network=config.allow_network,
        memory_mb=config.task_memory_mb,
        processes=config.task_processes,
        slots=config.slots,
        data_dir=config.data_dir,
    )
    if settings.sandboxed:
        os.environ[TASK_PATH_ENV] = TASK_PATH
    return settings


def run(args: argparse.Namespace) -> int:
    """Serve until stopped."""
    config = config_from(args)
    # The command task and the executors read these.
    os.environ[ALLOWED_ENV] = ",".join(config.allowed_commands)
    import_task_modules()
    asyncio.run(serve(config))
    return 0
