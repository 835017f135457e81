"""`taskyard worker`: run a worker daemon until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from taskyard.config import load_toml, resolve
from taskyard.errors import InvalidArgumentError
from taskyard.limits import MAX_SLOTS
from taskyard.tasks.command import ALLOWED_ENV, TASK_PATH_ENV
from taskyard.tasks.loading import load_tasks
from taskyard.worker.agent import Agent
from taskyard.worker.client import SchedulerClient, open_channel
from taskyard.worker.config import WorkerConfig
from taskyard.worker.identity import load_or_create_token
from taskyard.worker.outbox import Outbox
from taskyard.worker.runner import TaskRunner
from taskyard.worker.sandbox import limits, probe
from taskyard.worker.sandbox.settings import PROCESS, SANDBOX, TASK_PATH, SandboxSettings

log = logging.getLogger(__name__)


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
    client = SchedulerClient(open_channel(config.scheduler, config.tls_ca), token)
    runner = TaskRunner(
        config.slots,
        abort_grace=config.abort_grace,
        scratch=config.data_dir / "scratch",
        settings=settings,
    )
    agent = Agent(config, client, runner, Outbox(config.data_dir / "results"))
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
    if not 0 <= config.prefetch <= MAX_SLOTS:
        raise InvalidArgumentError(
            f"--prefetch must be from 0 to {MAX_SLOTS}, not {config.prefetch}"
        )
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
        log.info("tasks run sandboxed (bubblewrap; limits by %s)", settings.limiter["kind"])
    return settings


def run(args: argparse.Namespace) -> int:
    """Serve until stopped."""
    config = config_from(args)
    # The command task and the executors read these.
    os.environ[ALLOWED_ENV] = ",".join(config.allowed_commands)
    for problem in load_tasks():  # said, and the other tasks run
        log.warning("%s", problem)
    asyncio.run(serve(config))
    return 0
