"""The worker's commands for the `taskyard` command line (the
`taskyard.commands` entry points): their arguments only. What runs them is
imported when one runs, so other commands never load the worker."""

from __future__ import annotations

import argparse
from pathlib import Path

from taskyard.cli.parsing import Subparsers


def add_worker(subparsers: Subparsers) -> None:
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
    parser.add_argument(
        "--prefetch",
        type=int,
        help="assignments held beyond the slots under load, 0-256 (default 0): short "
        "tasks then start the moment a slot frees",
    )
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
    parser.set_defaults(handler=_run_worker, service_name="taskyard-worker")


def add_run_local(subparsers: Subparsers) -> None:
    """Register the `run-local` subcommand."""
    parser = subparsers.add_parser(
        "run-local",
        help="run one task here, as a worker would, without a scheduler",
        description="run any installed task on this machine as a worker would (its programs "
        "in the sandbox), without a scheduler: to try a task while writing it",
    )
    parser.add_argument("task", help="task name, e.g. noop")
    parser.add_argument(
        "--data", default="{}", help="task data: a JSON object, or @FILE holding one"
    )
    parser.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a file to put in the task's inputs/ (repeatable): what a worker downloads "
        "from the task data's inputs",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("taskyard-output"),
        help="where the artifacts the task uploads are written (default ./taskyard-output)",
    )
    parser.add_argument(
        "--allow-command",
        dest="allowed_commands",
        action="append",
        default=[],
        help="program the command task may run (repeatable; also TASKYARD_ALLOWED_COMMANDS)",
    )
    parser.add_argument("--executor", choices=["sandbox", "process"], default="sandbox")
    parser.add_argument(
        "--allow-network", action="store_true", help="let a task that asks for it have the network"
    )
    parser.set_defaults(handler=_run_local)


def _run_worker(args: argparse.Namespace) -> int:
    from taskyard.worker.cli import run  # noqa: PLC0415

    return run(args)


def _run_local(args: argparse.Namespace) -> int:
    from taskyard.worker.run_local import run  # noqa: PLC0415

    return run(args)
