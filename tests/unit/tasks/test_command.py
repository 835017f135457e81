"""The built-in `command` task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskyard.tasks import Command, TaskConfigError
from taskyard.tasks.command import OUTPUT_CATEGORY, CommandNotAllowedError, CommandTimeoutError
from taskyard.testing.tasks import FakeServerAccess


@pytest.fixture(autouse=True)
def _allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKYARD_ALLOWED_COMMANDS", "sh,echo,no-such-program-xyz")


def command(data: dict[str, Any], access: FakeServerAccess | None = None) -> Command:
    task = Command()
    task.configure(data)
    task.configure_server_access(access or FakeServerAccess())
    return task


def test_it_runs_the_program_and_keeps_its_output_as_debug_logs() -> None:
    access = FakeServerAccess()
    task = command({"command": ["sh", "-c", "echo out; echo err >&2; exit 0"]}, access)
    assert task.execute() is True
    [logs] = access.uploads
    assert logs.contents == {"stderr.txt": b"err\n", "stdout.txt": b"out\n"}


def test_a_non_zero_exit_is_a_failure() -> None:
    assert command({"command": ["sh", "-c", "exit 3"]}).execute() is False


def test_never_through_a_shell() -> None:
    access = FakeServerAccess()
    assert command({"command": ["echo", "$HOME; rm -rf /"]}, access).execute() is True
    assert access.uploads[0].contents["stdout.txt"] == b"$HOME; rm -rf /\n"


def test_environment_and_outputs(tmp_path: Path) -> None:
    access = FakeServerAccess()
    script = 'mkdir -p out; printf "%s" "$GREETING" > out/greeting.txt'
    task = command(
        {
            "command": ["sh", "-c", script],
            "env": {"GREETING": "hi"},
            "outputs": ["out/greeting.txt"],
        },
        access,
    )
    assert task.execute() is True
    [outputs, _logs] = access.uploads
    assert outputs.category == OUTPUT_CATEGORY
    assert outputs.contents == {"out/greeting.txt": b"hi"}


def test_the_timeout_stops_the_program_and_is_an_error() -> None:
    access = FakeServerAccess()
    with pytest.raises(CommandTimeoutError) as caught:
        command({"command": ["sh", "-c", "sleep 30"], "timeout": 0.3}, access).execute()
    assert caught.value.reason == "TIMEOUT"  # error/timeout, as a request's own timeout
    assert b"timed out after 0.3s" in access.uploads[0].contents["stderr.txt"]


def test_a_program_the_worker_does_not_allow_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    task = command({"command": ["true"]})
    with pytest.raises(CommandNotAllowedError, match="'true'"):
        task.execute()


@pytest.mark.parametrize("output", ["/etc/passwd", "../x", "a/../../b"])
def test_outputs_must_stay_inside_the_directory(output: str) -> None:
    with pytest.raises(TaskConfigError, match=r"\$\.outputs\[0\]"):
        Command().configure({"command": ["echo"], "outputs": [output]})


def test_analyze_worker_reports_allowed_programs_found_on_path() -> None:
    available = Command().analyze_worker()["command:available"]
    assert set(available) == {"sh", "echo"}  # no-such-program-xyz is not installed


@pytest.mark.parametrize(("program", "expected"), [("sh", True), ("echo", False), ("make", False)])
def test_can_run_on_needs_the_program_allowed_and_available(program: str, expected: bool) -> None:
    task = Command()
    task.configure({"command": [program]})
    metadata = {"command:version": 1, "command:available": {"sh": ""}}
    assert task.can_run_on(metadata) is expected


def test_the_exit_code_is_reported_with_the_failure() -> None:
    task = command({"command": ["sh", "-c", "exit 3"]})
    assert task.execute() is False
    assert (task.result_reason, task.result_details) == ("exit-code", {"exit_code": 3})
    success = command({"command": ["sh", "-c", "exit 0"]})
    assert success.execute() is True
    assert success.result_details == {"exit_code": 0}


def test_a_signal_that_ends_the_program_is_reported() -> None:
    task = command({"command": ["sh", "-c", "kill -KILL $$"]})
    assert task.execute() is False
    assert task.result_reason == "signal"
    assert task.result_details == {"signal": "SIGKILL", "signal_number": 9}


def test_a_timeout_in_the_task_data_is_an_error_timeout() -> None:
    task = command({"command": ["sh", "-c", "sleep 30"], "timeout": 0.2})
    with pytest.raises(CommandTimeoutError) as caught:
        task.execute()
    assert caught.value.reason == "TIMEOUT"


def test_live_output_is_the_debug_logs_byte_for_byte() -> None:
    access = FakeServerAccess()
    streamed: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    task = command({"command": ["sh", "-c", "seq 1 20000; echo oops >&2; seq 5 >&2"]}, access)
    task.configure_output(
        lambda stream, data: streamed.__setitem__(stream, streamed[stream] + data)
    )
    assert task.execute() is True
    [logs] = access.uploads
    assert streamed["stdout"] == logs.contents["stdout.txt"]
    assert streamed["stderr"] == logs.contents["stderr.txt"] == b"oops\n1\n2\n3\n4\n5\n"
    assert len(streamed["stdout"]) > 64 * 1024  # it came in several chunks
