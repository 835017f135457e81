"""How much `Task.configure()` costs over bare JSON Schema validation.

The scheduler configures every submitted request's task, so this is a floor on
submit cost. Both sides validate the same `noop` data against the same
pre-compiled Draft 2020-12 validator; the ratio is what the Task library adds
(instantiation, the object check, the defensive copy).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from jsonschema import Draft202012Validator

from taskyard.tasks import Noop

DATA = {"result": True, "sleep": 0}
ROUNDS = 20_000


def rate(operation: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Return operations per second, best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds):
            operation()
        best = min(best, time.perf_counter() - started)
    return rounds / best


def main() -> None:
    validator = Draft202012Validator(
        Noop.TASK_DATA_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    bare = rate(lambda: validator.is_valid(DATA))

    def configure() -> None:
        Noop().configure(DATA)

    taskyard = rate(configure)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"{'operation':<40} {'per second':>12}")
    print(f"{'bare jsonschema is_valid':<40} {bare:>12,.0f}")
    print(f"{'Noop().configure(data)':<40} {taskyard:>12,.0f}")
    print(f"ratio configure / bare: {taskyard / bare:.2f}")


if __name__ == "__main__":
    main()
