"""Entry point of the `taskyard` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from taskyard.cli import artifacts, demo, operator, run_local, work_requests
from taskyard.cli.errors import CliError
from taskyard.errors import TaskyardError
from taskyard.logs import configure_logging
from taskyard.scheduler import cli as scheduler_cli
from taskyard.telemetry import configure
from taskyard.worker import cli as worker_cli


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="taskyard", description="Taskyard: schedule tasks on a fleet of workers."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("TASKYARD_LOG_FORMAT", "text"),
        help="log lines as text or one JSON object per line (default $TASKYARD_LOG_FORMAT)",
    )
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    scheduler_cli.add_parser(subparsers)
    worker_cli.add_parser(subparsers)
    work_requests.add_parsers(subparsers)
    operator.add_parsers(subparsers)
    artifacts.add_parsers(subparsers)
    run_local.add_parser(subparsers)
    demo.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user mistakes print one line and exit non-zero."""
    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    os.environ["TASKYARD_LOG_FORMAT"] = args.log_format  # for the processes this one starts
    service = getattr(args, "service_name", "taskyard-cli")
    telemetry = configure(service, getattr(args, "otlp_endpoint", None) or "")
    try:
        code: int = args.handler(args)
    except CliError as error:
        print(f"taskyard: error: {error}", file=sys.stderr)
        return error.exit_code
    except TaskyardError as error:
        print(f"taskyard: error: {error.message}", file=sys.stderr)
        return 2
    finally:
        telemetry.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
