"""The `taskyard` command line (after `main`'s fast path for `--version`).

The client commands live here; the daemons add theirs (`scheduler`,
`worker`, `run-local`) through the `taskyard.commands` entry points, which
are looked up only when a command is not a client's (or for the whole
`--help`): a client command never loads the scheduler or the worker.

Every mistake ends in one line on stderr (a JSON object under `--json`) and
the documented exit status: 2 invalid input, 1 refused or failed, 3 the
scheduler unreachable, 130 interrupted. A closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Collection, Sequence
from typing import Any, NoReturn, cast

from taskyard.cli import (
    artifacts,
    demo,
    operator,
    pipeline,
    submit_many,
    tenants,
    work_requests,
)
from taskyard.cli.errors import INTERRUPTED, INVALID, REFUSED, UNREACHABLE, CliError
from taskyard.cli.parsing import Subparsers
from taskyard.cli.version import taskyard_version
from taskyard.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    TaskyardError,
    UnavailableError,
)
from taskyard.logs import configure_logging
from taskyard.telemetry import configure


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose mistakes are one line like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """`--version` with other arguments (alone, `main` answers it sooner);
    the version is looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        parser.exit(0, f"taskyard {taskyard_version()}\n")


#: What the daemons' packages add to the command line.
COMMANDS_GROUP = "taskyard.commands"
#: Top-level options that take a value (the command comes after it).
_VALUED = {"--log-format"}


def build_parser(daemons: bool = True) -> argparse.ArgumentParser:
    """Return the parser of every client command, and, with `daemons`, of
    those the installed packages add."""
    parser, subparsers = _client_parsers()
    if daemons:
        _add_daemons(subparsers)
    return parser


def _client_parsers() -> tuple[argparse.ArgumentParser, Subparsers]:
    parser = OneLineParser(
        prog="taskyard", description="Taskyard: schedule tasks on a fleet of workers."
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
    work_requests.add_parsers(subparsers)
    operator.add_parsers(subparsers)
    tenants.add_parsers(subparsers)
    pipeline.add_parsers(subparsers)
    submit_many.add_parsers(subparsers)
    artifacts.add_parsers(subparsers)
    demo.add_parser(subparsers)
    return parser, subparsers


def _add_daemons(subparsers: Subparsers) -> None:
    from importlib.metadata import entry_points  # noqa: PLC0415

    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load()(subparsers)


def _names_a_client_command(argv: Sequence[str], clients: Collection[str]) -> bool:
    """Whether the command line runs one of `clients` (not a command some
    package adds, nor the whole help)."""
    words = iter(argv)
    for word in words:
        if word in {"-h", "--help"}:
            return False
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word in clients
    return False


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


def run(argv: Sequence[str]) -> int:
    """Run the command line; user mistakes print one line and exit non-zero."""
    parser, subparsers = _client_parsers()
    if not _names_a_client_command(argv, subparsers.choices):
        _add_daemons(subparsers)
    args = parser.parse_args(argv)
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
