"""Entry point of the `taskyard` command.

Every mistake ends in one line on stderr (a JSON object under `--json`) and
the documented exit status: 2 invalid input, 1 refused or failed, 3 the
scheduler unreachable, 130 interrupted. A closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn, cast

from taskyard.cli import artifacts, demo, operator, run_local, work_requests
from taskyard.cli.errors import INTERRUPTED, INVALID, REFUSED, UNREACHABLE, CliError
from taskyard.cli.parsing import Subparsers
from taskyard.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    TaskyardError,
    UnavailableError,
)
from taskyard.logs import configure_logging
from taskyard.scheduler import cli as scheduler_cli
from taskyard.telemetry import configure
from taskyard.worker import cli as worker_cli


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose mistakes are one line like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        return version("taskyard")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = OneLineParser(
        prog="taskyard", description="Taskyard: schedule tasks on a fleet of workers."
    )
    parser.add_argument("--version", action="version", version=f"taskyard {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("TASKYARD_LOG_FORMAT", "text"),
        help="log lines as text or one JSON object per line (default $TASKYARD_LOG_FORMAT)",
    )
    subparsers = cast(
        Subparsers,
        parser.add_subparsers(required=True, metavar="COMMAND", parser_class=OneLineParser),
    )
    scheduler_cli.add_parser(subparsers)
    worker_cli.add_parser(subparsers)
    work_requests.add_parsers(subparsers)
    operator.add_parsers(subparsers)
    artifacts.add_parsers(subparsers)
    run_local.add_parser(subparsers)
    demo.add_parser(subparsers)
    return parser


def as_cli_error(error: BaseException) -> CliError | None:
    """The one line a failure is reported as; None for a bug (a traceback)."""
    if isinstance(error, CliError):
        return error
    if isinstance(error, TaskyardError):
        code = (
            INVALID
            if isinstance(error, InvalidArgumentError)
            else REFUSED
            if isinstance(error, ResourceExhaustedError)
            else UNREACHABLE
            if isinstance(error, UnavailableError)
            else REFUSED
        )
        return CliError(error.message, code, reason=error.reason, violations=error.violations)
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        return CliError(f"{error.strerror or error}{where}", REFUSED, reason="OS_ERROR")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user mistakes print one line and exit non-zero."""
    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    os.environ["TASKYARD_LOG_FORMAT"] = args.log_format  # for the processes this one starts
    service = getattr(args, "service_name", "taskyard-cli")
    prometheus = getattr(args, "prometheus", None)  # a command serving /metrics says so
    telemetry = configure(
        service,
        getattr(args, "otlp_endpoint", None) or "",
        prometheus=prometheus is not None and prometheus(args),
    )
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("taskyard: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        failure = as_cli_error(error)
        if failure is None:
            raise
        if getattr(args, "json", False):
            print(failure.as_json(), file=sys.stderr)
        else:
            print(f"taskyard: error: {failure.message}", file=sys.stderr)
        return failure.exit_code
    finally:
        telemetry.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
