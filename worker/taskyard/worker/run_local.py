"""`taskyard run-local`: run one task in this process, without a scheduler.

For trying a task and its data while writing it. Ctrl-C aborts the task the
way a scheduler abort would.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from taskyard.cli.errors import CliError
from taskyard.cli.json_arg import parse_json_object
from taskyard.errors import TaskyardError
from taskyard.tasks import Task, TaskConfigError, UnknownTaskError


def run(args: argparse.Namespace) -> int:
    """Configure and execute the task; exit 0 on success, 1 on failure."""
    data = parse_json_object(args.data, option="--data")
    try:
        task = Task.class_from_name(args.task)()
        task.configure(data)
    except (UnknownTaskError, TaskConfigError) as error:
        raise CliError(error.message) from error

    def abort(_signum: int, _frame: FrameType | None) -> None:
        task.logger.warning("interrupted: aborting %s", task.name)
        task.abort()

    previous = signal.signal(signal.SIGINT, abort)
    try:
        succeeded = task.execute()
    except TaskyardError as error:  # the task refused (a program not allowed, a timeout...)
        raise CliError(f"{task.name}: {error.message}", 1) from error
    except Exception:
        task.logger.exception("task %s failed with an exception", task.name)  # a bug in it
        succeeded = False
    finally:
        signal.signal(signal.SIGINT, previous)
    outcome = "aborted" if task.aborted else "success" if succeeded else "failure"
    print(f"{task.name} {outcome} (ran locally, without a scheduler)")
    return 0 if succeeded else 1
