"""How fast the `taskyard` command answers, against importing grpc alone.

Three commands, each run 30 times in alternation in fresh processes (the
same way a person or a script starts them): `python -c "import grpc"` (the
floor of any Python gRPC client), `taskyard --version`, and `taskyard get
ID` against a running scheduler. Medians, and the ratios to the floor.

Run: .venv/bin/python bench/cli.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from support import TASKYARD, machine, scheduler_process


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(runs: int) -> None:
    print(machine())
    with scheduler_process() as (scheduler, token):
        env = {**os.environ, "TASKYARD_SCHEDULER": scheduler.address, "TASKYARD_TOKEN": token}
        submitted = subprocess.run([*TASKYARD, "submit", "noop"], env=env, check=True,
                                   capture_output=True, text=True)  # fmt: skip
        commands = {
            "import grpc": [sys.executable, "-c", "import grpc"],
            "taskyard --version": [*TASKYARD, "--version"],
            "taskyard get ID": [*TASKYARD, "get", submitted.stdout.strip()],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(timed(command, env))
    floor = statistics.median(times["import grpc"])
    for name, found in times.items():
        median = statistics.median(found)
        print(f"  {name:<20} median {median * 1000:6.1f} ms  ({median / floor:.2f} x import grpc)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    main(parser.parse_args().runs)
