"""`taskyard run-local`: runs a task here as a worker would; user mistakes
give one line. (Plain processes here; the sandboxed run is below, where
bubblewrap works.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskyard.cli.main import main
from tests.e2e.sandbox import require_sandbox

PLAIN = ["--executor", "process"]


def test_run_local_success_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run-local", "noop", "--data", '{"sleep": 0}', *PLAIN]) == 0
    assert "noop success" in capsys.readouterr().out


def test_run_local_failure_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run-local", "NOOP", "--data", '{"result": false}', *PLAIN]) == 1
    assert "noop failure" in capsys.readouterr().out


def test_run_local_reads_data_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"result": False}))
    assert main(["run-local", "noop", "--data", f"@{data}", *PLAIN]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run-local", "nope"], "unknown task 'nope'; known tasks: command, noop"),
        (["run-local", "noop", "--data", "{"], "--data is not valid JSON"),
        (["run-local", "noop", "--data", "[1]"], "--data must be a JSON object"),
        (["run-local", "noop", "--data", '{"sleep": -1}'], "$.sleep: -1 is less than"),
        (["run-local", "noop", "--data", "@/no/such/file"], "cannot read --data file"),
        (["run-local", "noop", "--input", "/no/such/file"], "--input /no/such/file is not a"),
        (["run-local", "noop", "--data", '{"environment": "e1"}'], "cannot fetch environments"),
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


def test_inputs_in_outputs_out_as_on_a_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "words.txt").write_text("one two three\n")
    monkeypatch.chdir(tmp_path)
    data = {
        "command": ["sh", "-c", "wc -w < inputs/words.txt > count.txt"],
        "outputs": ["count.txt"],
    }
    code = main(["run-local", "command", "--data", json.dumps(data), "--input", "words.txt",
                 "--allow-command", "sh", *PLAIN])  # fmt: skip
    assert code == 0, capsys.readouterr()
    [uploaded] = (tmp_path / "taskyard-output").glob("*-taskyard-command-output")
    assert (uploaded / "count.txt").read_text().strip() == "3"


@require_sandbox()
def test_in_the_sandbox_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {"command": ["sh", "-c", "echo $HOME; cat /proc/1/cmdline | tr '\\0' ' '"]}
    code = main(["run-local", "command", "--data", json.dumps(data), "--allow-command", "sh",
                 "--output-dir", str(tmp_path / "out")])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed
    assert "/work" in printed.out
    assert "bwrap" in printed.out  # the sandbox's first process
    assert "sandboxed" in printed.out
