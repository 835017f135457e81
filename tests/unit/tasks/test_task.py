"""The Task API, method by method."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from taskyard.errors import InvalidArgumentError
from taskyard.tasks import DEBUG_LOGS_CATEGORY, Noop, Task, TaskConfigError
from taskyard.testing.tasks import FakeServerAccess
from tests.helpers import unregistered

pytestmark = pytest.mark.usefixtures("isolated_registry")


@unregistered
class Probe(Task):
    """A task whose behaviour the tests set through its data."""

    TASK_VERSION = 7
    TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1},
            "mode": {"enum": ["ok", "fail", "raise"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["count"],
        "additionalProperties": False,
    }

    def _execute(self) -> bool:
        assert self.data is not None
        with self.create_debug_log_file("run.log") as log:
            log.write(f"count={self.data['count']}\n")
        if self.data.get("mode") == "raise":
            raise RuntimeError("probe exploded")
        return bool(self.data.get("mode", "ok") == "ok")


@pytest.fixture(autouse=True)
def _register_probe(isolated_registry: dict[str, type[Task]]) -> None:
    isolated_registry["probe"] = Probe


# -- Construction -----------------------------------------------------------


def test_new_task_has_name_logger_and_no_data() -> None:
    task = Probe()
    assert task.name == "probe"
    assert isinstance(task.logger, logging.Logger)
    assert task.logger.name.split(".")[-1] == "probe"
    assert task.data is None
    assert task.aborted is False


# -- configure ----------------------------------------------------------------


def test_configure_stores_valid_data() -> None:
    task = Probe()
    tags = ["a"]
    data = {"count": 2, "tags": tags}
    task.configure(data)
    assert task.data == {"count": 2, "tags": ["a"]}
    tags.append("b")  # the task keeps its own copy
    assert task.data == {"count": 2, "tags": ["a"]}


def test_configure_lists_every_violation_with_its_json_path_and_keeps_no_data() -> None:
    task = Probe()
    with pytest.raises(TaskConfigError) as caught:
        task.configure({"count": 0, "mode": "maybe", "tags": ["x", 3], "extra": 1})
    error = caught.value
    fields = sorted(v.field for v in error.violations)
    assert fields == ["$", "$.count", "$.mode", "$.tags[1]"]
    for field in ["$.count", "$.mode", "$.tags[1]", "'extra' was unexpected"]:
        assert field in str(error)
    assert isinstance(error, InvalidArgumentError)
    assert error.reason == "TASK_DATA_INVALID"
    assert task.data is None


def test_configure_reports_a_missing_required_property() -> None:
    with pytest.raises(TaskConfigError, match="'count' is a required property"):
        Probe().configure({})


@pytest.mark.parametrize("data", [[], "count", 3, None])
def test_configure_refuses_data_that_is_not_an_object(data: Any) -> None:
    task = Probe()
    with pytest.raises(TaskConfigError, match="must be a JSON object"):
        task.configure(data)
    assert task.data is None


def test_a_failed_configure_leaves_earlier_data_untouched() -> None:
    task = Probe()
    task.configure({"count": 1})
    with pytest.raises(TaskConfigError):
        task.configure({"count": -1})
    assert task.data == {"count": 1}


def test_a_task_without_schema_accepts_any_object() -> None:
    class Free(Task):
        TASK_VERSION = 1

        def _execute(self) -> bool:
            return True

    task = Free()
    task.configure({"anything": [1, {"goes": None}]})
    assert task.data == {"anything": [1, {"goes": None}]}


def test_configure_checks_formats() -> None:
    class Mailer(Task):
        TASK_VERSION = 1
        TASK_DATA_SCHEMA: ClassVar[dict[str, Any]] = {
            "type": "object",
            "properties": {"to": {"type": "string", "format": "email"}},
        }

        def _execute(self) -> bool:
            return True

    Mailer().configure({"to": "someone@example.org"})
    with pytest.raises(TaskConfigError, match=r"\$\.to"):
        Mailer().configure({"to": "not an address"})


# -- Matching -------------------------------------------------------------------


def test_prefix_with_task_name() -> None:
    assert Probe().prefix_with_task_name("arch") == "probe:arch"


def test_analyze_worker_reports_the_task_version() -> None:
    assert Probe().analyze_worker() == {"probe:version": 7}


def test_analyze_worker_all_tasks_merges_every_registered_task() -> None:
    class Arch(Task):
        TASK_VERSION = 2

        def analyze_worker(self) -> dict[str, Any]:
            metadata = super().analyze_worker()
            metadata[self.prefix_with_task_name("arch")] = "amd64"
            return metadata

        def _execute(self) -> bool:
            return True

    metadata = Task.analyze_worker_all_tasks()
    assert metadata["noop:version"] == Noop.TASK_VERSION
    assert metadata["probe:version"] == 7
    assert metadata["arch:version"] == 2
    assert metadata["arch:arch"] == "amd64"
    assert set(metadata) == {
        key for cls in Task._sub_tasks.values() for key in cls().analyze_worker()
    }


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"probe:version": 7}, True),
        ({"probe:version": 7, "other:version": 1}, True),
        ({"probe:version": 6}, False),
        ({"probe:version": "7"}, False),
        ({}, False),
        ({"noop:version": 7}, False),
    ],
)
def test_can_run_on_requires_the_same_task_version(
    metadata: dict[str, Any], expected: bool
) -> None:
    assert Probe().can_run_on(metadata) is expected


def test_can_run_on_is_extended_by_calling_super_first() -> None:
    class NeedsArm(Task):
        TASK_VERSION = 1

        def can_run_on(self, worker_metadata: dict[str, Any]) -> bool:
            if not super().can_run_on(worker_metadata):
                return False
            return bool(worker_metadata.get("system:architecture") == "arm64")

        def _execute(self) -> bool:
            return True

    task = NeedsArm()
    assert task.can_run_on({"needsarm:version": 1, "system:architecture": "arm64"})
    assert not task.can_run_on({"needsarm:version": 1, "system:architecture": "amd64"})
    assert not task.can_run_on({"needsarm:version": 2, "system:architecture": "arm64"})


# -- Abort ------------------------------------------------------------------------


def test_abort_is_one_way_and_aborted_is_read_only() -> None:
    task = Probe()
    task.abort()
    assert task.aborted is True
    task.abort()
    assert task.aborted is True
    with pytest.raises(AttributeError):
        task.aborted = False  # type: ignore[misc]
    assert task.aborted is True


def test_wait_for_abort_wakes_when_aborted_from_another_thread() -> None:
    task = Probe()
    threading.Timer(0.05, task.abort).start()
    started = time.monotonic()
    assert task.wait_for_abort(30) is True
    assert time.monotonic() - started < 10
    assert task.wait_for_abort(0) is True


# -- Debug log files ----------------------------------------------------------------


def test_create_debug_log_file_in_text_and_binary_modes() -> None:
    task = Probe()
    with task.create_debug_log_file("notes.txt") as text:
        text.write("héllo\n")
    with task.create_debug_log_file("blob.bin", mode="wb") as binary:
        binary.write(b"\x00\xff")
    directory = Path(text.name).parent
    assert (directory / "notes.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (directory / "blob.bin").read_bytes() == b"\x00\xff"
    assert Path(binary.name).parent == directory


def test_each_task_has_its_own_debug_log_directory() -> None:
    first, second = Probe(), Probe()
    with first.create_debug_log_file("a.log") as a, second.create_debug_log_file("a.log") as b:
        assert Path(a.name).parent != Path(b.name).parent


@pytest.mark.parametrize("filename", ["../escape.log", "sub/dir.log", "..", ".", "", "a\0b"])
def test_create_debug_log_file_refuses_paths(filename: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        Probe().create_debug_log_file(filename)


@pytest.mark.parametrize("mode", ["r", "rb", "r+", "wt+"])
def test_create_debug_log_file_refuses_non_write_modes(mode: str) -> None:
    with pytest.raises(ValueError, match="mode"):
        Probe().create_debug_log_file("x.log", mode=mode)


# -- execute ----------------------------------------------------------------------


def configured_probe(access: FakeServerAccess | None, **data: Any) -> Probe:
    task = Probe()
    task.configure({"count": 1, **data})
    task.work_request_id = "wr-1"
    if access is not None:
        task.configure_server_access(access)
    return task


@pytest.mark.parametrize(("mode", "expected"), [("ok", True), ("fail", False)])
def test_execute_returns_the_result_and_uploads_the_debug_logs(mode: str, expected: bool) -> None:
    access = FakeServerAccess()
    task = configured_probe(access, mode=mode)
    assert task.execute() is expected
    [upload] = access.uploads
    assert upload.category == DEBUG_LOGS_CATEGORY == "taskyard:work-request-debug-logs"
    assert upload.work_request_id == "wr-1"
    assert upload.contents == {"run.log": b"count=1\n"}


def test_execute_uploads_the_debug_logs_also_when_execute_raised() -> None:
    access = FakeServerAccess()
    task = configured_probe(access, mode="raise")
    with pytest.raises(RuntimeError, match="probe exploded"):
        task.execute()
    assert [u.contents for u in access.uploads] == [{"run.log": b"count=1\n"}]


def test_a_failed_upload_after_a_raise_does_not_hide_the_task_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = configured_probe(FakeServerAccess(fail_with=OSError("disk full")), mode="raise")
    with pytest.raises(RuntimeError, match="probe exploded"):
        task.execute()
    assert "could not upload the debug logs" in caplog.text


def test_execute_uploads_all_debug_logs_as_one_artifact_and_closes_them() -> None:
    class TwoLogs(Task):
        TASK_VERSION = 1

        def _execute(self) -> bool:
            self.create_debug_log_file("out.log").write("out")
            self.create_debug_log_file("err.log").write("err")  # left open by the task
            return True

    access = FakeServerAccess()
    task = TwoLogs()
    task.configure_server_access(access)
    assert task.execute() is True
    [upload] = access.uploads
    assert upload.contents == {"err.log": b"err", "out.log": b"out"}


def test_execute_without_debug_logs_uploads_nothing() -> None:
    access = FakeServerAccess()
    task = Noop()
    task.configure({})
    task.configure_server_access(access)
    assert task.execute() is True
    assert access.uploads == []


def test_without_server_access_debug_logs_stay_on_disk_and_are_located(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    task = configured_probe(None)
    assert task.execute() is True
    [record] = [r for r in caplog.records if "kept in" in r.getMessage()]
    directory = Path(record.getMessage().rsplit(" ", 1)[1])
    assert (directory / "run.log").read_text() == "count=1\n"


def test_execute_logging_exceptions_logs_the_traceback_and_returns_false(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = configured_probe(FakeServerAccess(), mode="raise")
    assert task.execute_logging_exceptions() is False
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.name == task.logger.name
    assert "probe exploded" in caplog.text
    assert "Traceback" in caplog.text


def test_execute_logging_exceptions_passes_the_result_through() -> None:
    assert configured_probe(FakeServerAccess(), mode="ok").execute_logging_exceptions() is True
    assert configured_probe(FakeServerAccess(), mode="fail").execute_logging_exceptions() is False


def test_configure_follows_a_schema_reassigned_after_class_creation() -> None:
    class Late(Task):
        TASK_VERSION = 1

        def _execute(self) -> bool:
            return True

    Late().configure({"x": 1})
    Late.TASK_DATA_SCHEMA = {"type": "object", "additionalProperties": False}
    with pytest.raises(TaskConfigError, match="'x' was unexpected"):
        Late().configure({"x": 1})
