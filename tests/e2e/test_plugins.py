"""Tasks shipped as a package, as a task author ships them: the example
distribution (`examples/wordcount`) built and installed into a fresh virtual
environment beside Taskyard; its own tests; a scheduler and a worker from
that environment running it on an input artifact; and docs/writing-tasks.md
run as written, in that environment."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import REPO, free_port, scheduler, taskyard, worker
from tests.e2e.sandbox import require_sandbox

pytestmark = [pytest.mark.e2e, require_sandbox()]
EXAMPLE = REPO / "examples" / "wordcount"
GUIDE = REPO / "docs" / "writing-tasks.md"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with Taskyard and the example installed."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    installed = subprocess.run(
        [root / "bin" / "python", "-m", "pip", "install", "--quiet", str(REPO), f"{EXAMPLE}[test]"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root


def in_venv(venv: Path) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "taskyard.cli.main"]


def test_the_example_passes_its_own_tests(venv: Path) -> None:
    ran = subprocess.run(
        [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "3 passed" in ran.stdout


def test_a_scheduler_and_worker_of_that_environment_run_it(venv: Path, tmp_path: Path) -> None:
    command = in_venv(venv)
    with scheduler(tmp_path / "s", "--auto-enable-workers", command=command) as process:
        client = Client(process)
        listed = taskyard(["tasks"], process.env(), command=command).stdout
        assert "wordcount  version 1  from taskyard-wordcount 1.0.0" in listed
        (tmp_path / "speech.txt").write_text("we shall fight on the beaches\n")
        upload = ["artifacts", "upload", "--category", "text", str(tmp_path / "speech.txt")]
        uploaded = taskyard(upload, process.env(), command=command)
        speech = uploaded.stdout.split()[0]
        with worker(process.address, tmp_path / "w", command=command):
            request = client.submit("wordcount", {"inputs": [{"artifact": speech}]})
            done = client.wait(request)
            assert done.result == pb.WORK_REQUEST_RESULT_SUCCESS, done
        found = json.loads(taskyard(["get", request, "--json"], process.env()).stdout)
        [counts] = [a for a in found["artifacts"] if a["category"] == "wordcount"]
        fetched = taskyard(["artifacts", "download", counts["id"], "-o", str(tmp_path / "out")],
                           process.env())  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr
        assert json.loads((tmp_path / "out" / "counts.json").read_text()) == {"speech.txt": 6}
        client.close()


def guide() -> str:
    """The shell block of docs/writing-tasks.md."""
    found = re.search(r"```sh\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_guide_runs_as_written(venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "guide.sh"
    script.write_text("set -euo pipefail\n" + guide())
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "TASKYARD_LISTEN": address,  # the guide's default address, moved off the shared port
        "TASKYARD_SCHEDULER": address,
    }
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as stdout_file, open(err, "w") as stderr_file:
        run = subprocess.Popen(
            ["bash", str(script)], cwd=tmp_path, env=env, stdout=stdout_file,
            stderr=stderr_file, start_new_session=True,
        )  # fmt: skip
        try:
            run.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):  # what the guide left running
                os.killpg(run.pid, signal.SIGTERM)
            run.wait()
    stdout, stderr = out.read_text(), err.read_text()
    assert run.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "hi, Ada" in stdout
    assert "greet  version 1  from greet-task 0.1.0" in stdout
    assert "completed (success)" in stdout
    assert "Traceback" not in stderr
