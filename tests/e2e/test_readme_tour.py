"""The README's shell examples, run as written, top to bottom."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


def block(heading: str) -> str:
    """The first shell block under `heading`."""
    section = README.read_text().split(heading + "\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


def run_block(heading: str, tmp_path: Path) -> tuple[str, str]:
    """Run the block under `heading` in `tmp_path` with `set -euo pipefail`;
    its stdout and stderr. It must exit 0 and print no traceback."""
    script = tmp_path / "example.sh"
    script.write_text("set -euo pipefail\n" + block(heading))
    address = f"127.0.0.1:{free_port()}"
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TASKYARD_LISTEN": address,  # the examples' default address, moved off the shared port
        "TASKYARD_SCHEDULER": address,
    }
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as stdout_file, open(err, "w") as stderr_file:
        run = subprocess.Popen(
            ["bash", str(script)],
            cwd=tmp_path,
            env=env,
            stdout=stdout_file,  # files, not pipes: the examples' daemons keep them open
            stderr=stderr_file,
            start_new_session=True,  # the examples' background scheduler and worker: one group
        )
        try:
            run.wait(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):  # stop what the example left running
                os.killpg(run.pid, signal.SIGTERM)
            run.wait()
    stdout, stderr = out.read_text(), err.read_text()
    assert run.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    return stdout, stderr


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    stdout, _ = run_block("## A tour of the CLI", tmp_path)
    assert "it exited with 3" in stdout
    assert 'details:   {"exit_code": 3}' in stdout
    assert "secret:" in stdout


def test_the_pipeline_example_runs_as_written(tmp_path: Path) -> None:
    stdout, _ = run_block("### Pipelines", tmp_path)
    assert "amd64-1.0\narm64-1.0" in stdout
    assert "pipeline of 5 requests: done, none failed" in stdout
    assert "dependency-failed" in stdout
