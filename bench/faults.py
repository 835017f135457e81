"""Fault injection at length: the fault tests of tests/e2e/test_faults.py with
50 worker kills and 10 scheduler kills (on SQLite and on PostgreSQL), and
aborts of SIGTERM-ignoring children at graces 3 s and 10 s. Prints the
figures the tests measure: requeue times, reconnect times after restarts,
abort-to-gone times. Not a pass/fail timing test: the assertions are the
tests' own (no loss, no double completion, no orphan)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker-kills", type=int, default=50)
    parser.add_argument("--scheduler-kills", type=int, default=10)
    args = parser.parse_args()
    env = {
        **os.environ,
        "TASKYARD_FAULT_WORKER_KILLS": str(args.worker_kills),
        "TASKYARD_FAULT_SCHEDULER_KILLS": str(args.scheduler_kills),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/e2e/test_faults.py"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    for line in run.stdout.splitlines():
        if line.startswith("faults:") or " passed" in line or " failed" in line:
            print(line)
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
