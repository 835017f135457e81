"""The `taskyard` CLI against a real scheduler process."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import SchedulerProcess, scheduler, taskyard

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with scheduler(tmp_path_factory.mktemp("scheduler")) as process:
        yield process


def ok(args: list[str], running: SchedulerProcess, **env: str) -> str:
    result = taskyard(args, running.env(**env))
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(args: list[str], running: SchedulerProcess, code: int, **env: str) -> str:
    result = taskyard(args, running.env(**env))
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("taskyard: error: ")
    assert "Traceback" not in result.stderr
    return result.stderr


def test_the_admin_token_is_written_private(running: SchedulerProcess) -> None:
    token = running.data_dir / "admin.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text().strip()) >= 43


def test_submit_get_list_explain_abort_retry(running: SchedulerProcess) -> None:
    work_request_id = ok(
        ["submit", "noop", "--data", '{"sleep": 1}', "--priority", "4"], running
    ).strip()
    assert work_request_id in ok(["list", "--state", "pending"], running)
    shown = json.loads(ok(["get", work_request_id, "--json"], running))
    assert (shown["priority"], shown["state"], shown["data"]) == (4, "pending", {"sleep": 1})
    assert "No worker is known" in ok(["explain", work_request_id], running)
    assert ok(["abort", work_request_id], running) == f"{work_request_id}: aborted\n"
    retried = ok(["retry", work_request_id], running)
    assert retried == f"{work_request_id}: pending again (attempt 2)\n"


def test_user_mistakes_are_one_line(running: SchedulerProcess) -> None:
    assert "$.sleep" in one_line_error(["submit", "noop", "--data", '{"sleep": -1}'], running, 2)
    assert "unknown task 'nope'" in one_line_error(["submit", "nope"], running, 2)
    assert "not valid JSON" in one_line_error(["submit", "noop", "--data", "{"], running, 2)
    assert "no work request" in one_line_error(["get", "missing"], running, 1)
    assert "unknown, revoked or expired" in one_line_error(
        ["list"], running, 1, TASKYARD_TOKEN="bad"
    )
    unreachable = one_line_error(["list", "--scheduler", "127.0.0.1:1"], running, 3)
    assert "cannot reach the scheduler at 127.0.0.1:1" in unreachable


def test_tokens_and_roles(running: SchedulerProcess) -> None:
    created = json.loads(
        ok(["token", "create", "--role", "submit", "--description", "ci", "--json"], running)
    )
    secret = created["secret"]
    assert (created["role"], created["state"]) == ("submit", "active")
    assert ok(["submit", "noop"], running, TASKYARD_TOKEN=secret).strip()
    denied = one_line_error(["workers", "list"], running, 1, TASKYARD_TOKEN=secret)
    assert "needs the admin role" in denied
    assert "submit" in ok(["token", "list"], running)
    ok(["token", "revoke", created["id"]], running)
    listed = json.loads(ok(["token", "list", "--json"], running))
    assert {t["id"]: t["state"] for t in listed}[created["id"]] == "revoked"


def test_operator_listings(running: SchedulerProcess) -> None:
    assert "no workers registered yet" in ok(["workers", "list"], running)
    tasks = json.loads(ok(["tasks", "--json"], running))
    assert {t["name"] for t in tasks} >= {"noop"}
    assert "no worker named 'ghost'" in one_line_error(["workers", "enable", "ghost"], running, 1)


def test_migrate_then_serve_and_exit_zero_on_sigterm(tmp_path: Path) -> None:
    migrated = taskyard(
        ["scheduler", "migrate"], {**os.environ, "TASKYARD_DATA_DIR": str(tmp_path)}
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "newest schema" in migrated.stdout
    with scheduler(tmp_path) as process:
        pass  # leaving the block sends SIGTERM
    assert process.process.returncode == 0


def test_artifacts_upload_list_show_download(running: SchedulerProcess, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 5000)
    uploaded = json.loads(
        ok(
            [
                "artifacts",
                "upload",
                "--category",
                "test:cli",
                "--data",
                '{"k": 1}',
                "--json",
                str(tmp_path / "a.txt"),
                str(tmp_path / "b.bin"),
            ],
            running,
        )
    )
    artifact_id = uploaded["id"]
    assert {f["path"] for f in uploaded["files"]} == {"a.txt", "b.bin"}
    assert artifact_id in ok(["artifacts", "list", "--category", "test:cli"], running)
    assert "b.bin" in ok(["artifacts", "show", artifact_id], running)
    out = tmp_path / "out"
    ok(["artifacts", "download", artifact_id, "a.txt", "-o", str(out)], running)
    assert (out / "a.txt").read_text() == "alpha\n"
    assert not (out / "b.bin").exists()
    assert "no artifact" in one_line_error(["artifacts", "show", "missing"], running, 1)
    assert "not a file" in one_line_error(
        ["artifacts", "upload", "--category", "c", str(tmp_path / "nope")], running, 2
    )
