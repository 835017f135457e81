"""Testing a task without a scheduler or a worker: for task authors' own tests.

    from taskyard.testing.tasks import run_task

    def test_it_counts_words() -> None:
        ran = run_task("wordcount", {}, inputs={"a.txt": b"one two"})
        assert ran.succeeded
        assert ran.uploads[0].contents["counts.json"] == b'{"a.txt": 2}\\n'

`run_task` runs the task as a worker would, in this process: a fresh working
directory with the `inputs` in `inputs/`, its programs as plain processes
(no sandbox: that is the worker's, tried with `taskyard run-local`), what it
uploads kept in memory (`FakeServerAccess`), and its live output collected.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskyard.tasks.base import Task
from taskyard.tasks.loading import load_tasks
from taskyard.tasks.sandbox import PlainProcesses


@dataclass
class UploadedArtifact:
    """What a task uploaded: the category, work request and file contents."""

    category: str
    work_request_id: str | None
    contents: dict[str, bytes]
    data: Mapping[str, Any] | None


@dataclass
class FakeServerAccess:
    """A ServerAccess that keeps uploads in memory, or fails when told to."""

    uploads: list[UploadedArtifact] = field(default_factory=list)
    fail_with: Exception | None = None

    def upload_artifact(
        self,
        category: str,
        files: Mapping[str, Path],
        *,
        work_request_id: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        contents = {name: path.read_bytes() for name, path in files.items()}
        self.uploads.append(UploadedArtifact(category, work_request_id, contents, data))
        return f"artifact-{len(self.uploads)}"


@dataclass
class Run:
    """How a task run by `run_task` ended."""

    succeeded: bool
    uploads: list[UploadedArtifact]
    #: What it said with `report()`: the failure's reason, and the details.
    reason: str | None
    details: dict[str, Any]
    #: Its live output by stream (`stdout`, `stderr`, `log`).
    output: dict[str, bytes]


def run_task(
    task: str | type[Task], data: Mapping[str, Any], *, inputs: Mapping[str, bytes] = {}
) -> Run:
    """Configure and execute a task as a worker would, here (see above): a
    task named by a string is looked for among the installed ones too."""
    if isinstance(task, str) and not Task.is_valid_task_name(task):
        load_tasks()
    instance = (Task.class_from_name(task) if isinstance(task, str) else task)()
    instance.configure(dict(data))
    server = FakeServerAccess()
    output: dict[str, bytearray] = {}
    instance.configure_server_access(server)
    instance.configure_output(
        lambda stream, chunk: output.setdefault(stream, bytearray()).extend(chunk)
    )
    with tempfile.TemporaryDirectory(prefix=f"taskyard-{instance.name}-") as work_dir:
        (Path(work_dir) / "inputs").mkdir()
        for name, content in (inputs or {}).items():
            (Path(work_dir) / "inputs" / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(work_dir) / "inputs" / name).write_bytes(content)
        instance.configure_sandbox(PlainProcesses(Path(work_dir)))
        succeeded = instance.execute()
    return Run(
        succeeded,
        server.uploads,
        instance.result_reason,
        instance.result_details,
        {stream: bytes(chunks) for stream, chunks in output.items()},
    )
