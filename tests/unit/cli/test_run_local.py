"""`taskyard run-local`: runs a task in-process; user mistakes give one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskyard.cli.main import main


def test_run_local_success_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run-local", "noop", "--data", '{"sleep": 0}']) == 0
    assert "noop success" in capsys.readouterr().out


def test_run_local_failure_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run-local", "NOOP", "--data", '{"result": false}']) == 1
    assert "noop failure" in capsys.readouterr().out


def test_run_local_reads_data_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"result": False}))
    assert main(["run-local", "noop", "--data", f"@{data}"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run-local", "nope"], "unknown task 'nope'; known tasks: command, noop"),
        (["run-local", "noop", "--data", "{"], "--data is not valid JSON"),
        (["run-local", "noop", "--data", "[1]"], "--data must be a JSON object"),
        (["run-local", "noop", "--data", '{"sleep": -1}'], "$.sleep: -1 is less than"),
        (["run-local", "noop", "--data", "@/no/such/file"], "cannot read --data file"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_two(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("taskyard: error: ")
    assert message in err
    assert "Traceback" not in err
