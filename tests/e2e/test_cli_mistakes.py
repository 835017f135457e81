"""Ordinary mistakes through the real CLI and a real scheduler: one line on
stderr, the documented exit status, never a traceback; and `--json` as its
documented schema, errors included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import TASKYARD, SchedulerProcess, scheduler, taskyard

pytestmark = pytest.mark.e2e
INVALID, REFUSED, UNREACHABLE, INTERRUPTED = 2, 1, 3, 130


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with scheduler(tmp_path_factory.mktemp("scheduler")) as process:
        yield process


def mistake(args: list[str], env: dict[str, str], code: int) -> str:
    """Run a command that must fail: its one line of stderr."""
    result = taskyard(args, env)
    assert result.returncode == code, (args, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("args", "extra", "code", "said"),
    [
        (["submit", "noop", "--priority", "99999999999"], {}, INVALID, "out of range"),
        (["submit", "noop", "--data", '{"sleep": -1}'], {}, INVALID, "$.sleep"),
        (["list", "--scheduler", "127.0.0.1"], {}, INVALID, "HOST:PORT"),
        (["list", "--scheduler", "127.0.0.1:99999"], {}, INVALID, "HOST:PORT"),
        (["list", "--token", ""], {}, INVALID, "token is empty"),
        (["list"], {"TASKYARD_TOKEN": "ty_abc\r"}, REFUSED, "unknown, revoked or expired"),
        (["list", "--token", "ty_\u00e9t\u00e9"], {}, INVALID, "no token has"),
        (["list", "--token", "ty_a b"], {}, INVALID, "no token has"),
        (["token", "create", "--role", "submit", "--ttl", "-5"], {}, INVALID, "more than 0"),
        (["list", "--since", "yesterday"], {}, INVALID, "not a time"),
        (["list", "--state", "done"], {}, INVALID, "invalid choice"),
        (["get", "missing"], {}, REFUSED, "no work request"),
        (["abort", "missing1"], {}, REFUSED, "no work request"),
        (["workers", "remove", "ghost"], {}, REFUSED, "no worker named"),
        (["run-local", "command", "--data", '{"command": ["ls"]}'], {}, REFUSED, "'ls'"),
        (["list", "--scheduler", "127.0.0.1:1"], {}, UNREACHABLE, "cannot reach"),
    ],
)
def test_a_mistake_is_one_line_and_its_exit_status(
    running: SchedulerProcess, args: list[str], extra: dict[str, str], code: int, said: str
) -> None:
    env = running.env(TASKYARD_ALLOWED_COMMANDS="", **extra)
    assert said in mistake(args, env, code)


def test_a_violation_is_said_once(running: SchedulerProcess) -> None:
    line = mistake(["submit", "noop", "--data", '{"sleep": -1}'], running.env(), INVALID)
    assert line.count("-1 is less than the minimum of 0") == 1, line


def test_downloads_to_where_nothing_can_be_written(
    running: SchedulerProcess, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    source.write_text("alpha\n")
    env = running.env()
    uploaded = taskyard(["artifacts", "upload", "--category", "c", "--json", str(source)], env)
    artifact_id = json.loads(uploaded.stdout)["id"]
    a_file = tmp_path / "file"
    a_file.write_text("")
    for target in (a_file / "below", a_file, Path("/proc/self/nope")):
        mistake(["artifacts", "download", artifact_id, "-o", str(target)], env, REFUSED)


def test_errors_under_json_are_one_json_object(running: SchedulerProcess) -> None:
    result = taskyard(["get", "missing", "--json"], running.env())
    assert result.returncode == REFUSED
    error = json.loads(result.stderr)["error"]
    assert (error["code"], error["reason"], error["exit_code"]) == (
        "NOT_FOUND",
        "WORK_REQUEST_NOT_FOUND",
        1,
    )
    invalid = json.loads(
        taskyard(["submit", "noop", "--data", '{"sleep": -1}', "--json"], running.env()).stderr
    )["error"]
    assert invalid["code"] == "INVALID_ARGUMENT"
    assert invalid["field_violations"][0]["field"].startswith("task_data_json")


def test_ctrl_c_while_watching_is_one_line_and_130(running: SchedulerProcess) -> None:
    work_request_id = taskyard(["submit", "noop"], running.env()).stdout.strip()
    watch = subprocess.Popen(
        [*TASKYARD, "watch", work_request_id],
        env=running.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    watch.send_signal(signal.SIGINT)
    _, stderr = watch.communicate(timeout=30)
    assert watch.returncode == INTERRUPTED
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "taskyard: interrupted"


def test_a_closed_pipe_ends_quietly(running: SchedulerProcess) -> None:
    for _ in range(30):
        taskyard(["submit", "noop"], running.env())
    result = subprocess.run(
        f"{' '.join(TASKYARD)} list --json --limit 30 | head -c 10",
        shell=True,
        env=running.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr
    assert result.stderr == ""


def test_scheduler_mistakes_at_start_are_one_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "taskyard.db").write_text("this is not a database")
    assert "not a database" in mistake(
        ["scheduler", "--data-dir", str(corrupt), "--listen", "127.0.0.1:0"], env, REFUSED
    )
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert "not a directory" in mistake(
        ["scheduler", "--data-dir", str(a_file), "--listen", "127.0.0.1:0"], env, REFUSED
    )
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert "in use" in mistake(
            ["scheduler", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}"],
            env,
            REFUSED,
        )
        page = ["scheduler", "--data-dir", str(tmp_path / "p"), "--listen", "127.0.0.1:0"]
        assert "in use" in mistake([*page, "--http", f"127.0.0.1:{port}"], env, REFUSED)
    for wrong in ("8080", "127.0.0.1:99999"):
        assert "HOST:PORT" in mistake([*page, "--http", wrong], env, INVALID)


def test_a_worker_that_cannot_sandbox_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # the tests' own helpers, but bubblewrap nowhere to be found
    bin_dir.mkdir()
    for helper in ("setpriv",):
        if found := shutil.which(helper):
            (bin_dir / helper).symlink_to(found)
    no_bwrap = {**os.environ, "PATH": str(bin_dir)}
    said = mistake(["worker", "--data-dir", str(tmp_path / "w")], no_bwrap, REFUSED)
    assert "bubblewrap" in said
    assert "--executor process" in said
    for flag, wrong in (("--task-memory-mb", "-5"), ("--task-processes", "-1")):
        assert flag in mistake(["worker", "--data-dir", str(tmp_path / "w"), flag, wrong],
                               dict(os.environ), INVALID)  # fmt: skip
    unknown = {**os.environ, "TASKYARD_EXECUTOR": "docker"}
    assert "sandbox or process" in mistake(
        ["worker", "--data-dir", str(tmp_path)], unknown, INVALID
    )


def keys(record: dict[str, Any], *expected: str) -> None:
    assert set(expected) <= set(record), set(expected) - set(record)


def test_json_is_plain_objects_numbers_and_names(running: SchedulerProcess, tmp_path: Path) -> None:
    env = running.env()

    def run(*args: str) -> Any:
        result = taskyard([*args, "--json"], env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    submitted = run("submit", "noop", "--data", '{"sleep": 1}')
    keys(
        submitted,
        *("id", "task", "data", "state", "result", "error", "details", "attempt", "owner"),
        *("created_at", "started_at", "completed_at", "waited_seconds", "ran_seconds"),
    )
    assert (submitted["data"], submitted["state"]) == ({"sleep": 1}, "pending")
    assert submitted["result"] is None
    assert submitted["created_at"].endswith("Z")
    got = run("get", submitted["id"])
    assert got["artifacts"] == []
    [listed] = [w for w in run("list", "--all") if w["id"] == submitted["id"]]
    assert listed["priority"] == 0
    explained = run("explain", submitted["id"])
    keys(explained, "work_request", "runnable", "summary", "workers")
    [aborted] = run("abort", submitted["id"])
    assert aborted["state"] == "aborted"
    assert aborted["error"]["reason"] == "aborted"
    assert run("workers", "list") == []
    [task] = [t for t in run("tasks") if t["name"] == "noop"]
    assert isinstance(task["data_schema"], dict)
    assert isinstance(task["version"], int)
    token = run("token", "create", "--role", "submit", "--ttl", "1h")
    keys(token, "id", "secret", "role", "state", "created_at", "expires_at", "revoked_at")
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    artifact = run("artifacts", "upload", "--category", "c", str(tmp_path / "f.bin"))
    assert artifact["files"][0]["size"] == 1000  # a number
    assert run("artifacts", "show", artifact["id"])["id"] == artifact["id"]
    pruned = run("prune", "--older-than", "30d")
    assert set(pruned) == {"work_requests", "artifacts", "blobs"}
