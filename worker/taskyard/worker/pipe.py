"""The messages between the worker and its executors, typed.

They travel as JSON lines over two pipes (the task's own stdout and stderr
are left alone), tagged by `op`:

- worker -> executor: `Run` (an assignment, with its working directory and
  environment), `Abort`, and the answer to an upload: `Uploaded` or
  `UploadFailed`;
- executor -> worker: `Upload` (the task's server access: the worker uploads
  through its own connection), `Output` (the task's live output, base64 in
  JSON), and `Done` (how the task ended: a `Report`).
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Job:
    """One assignment, as the runner and its executor need it."""

    work_request_id: str
    attempt: int
    task_name: str
    task_data_json: str
    trace_context: dict[str, str] = field(default_factory=dict)
    #: The attempt's working directory, made by the runner for the run.
    work_dir: str = ""
    #: The root filesystem of the environment the task asked for, if any.
    environment_root: str = ""


@dataclass(frozen=True)
class Report:
    """How a job ended."""

    outcome: str
    error: dict[str, str] | None = None
    output_json: str = ""
    #: How the task said it ended (`Task.report()`).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    OP: ClassVar[str] = "run"
    job: Job

    def fields(self) -> dict[str, Any]:
        return asdict(self.job)

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Run:
        return cls(Job(**fields))


@dataclass(frozen=True)
class Abort:
    OP: ClassVar[str] = "abort"
    #: Seconds the task has to stop its programs.
    grace: float


@dataclass(frozen=True)
class Uploaded:
    OP: ClassVar[str] = "uploaded"
    artifact_id: str


@dataclass(frozen=True)
class UploadFailed:
    OP: ClassVar[str] = "upload-failed"
    message: str


@dataclass(frozen=True)
class Upload:
    OP: ClassVar[str] = "upload"
    category: str
    #: Path in the artifact -> the local file.
    files: dict[str, str]
    data: dict[str, Any]
    work_request_id: str
    trace_context: dict[str, str]


@dataclass(frozen=True)
class Output:
    OP: ClassVar[str] = "output"
    stream: str
    data: bytes

    def fields(self) -> dict[str, Any]:
        return {"stream": self.stream, "data": b64encode(self.data).decode()}

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Output:
        return cls(fields["stream"], b64decode(fields["data"]))


@dataclass(frozen=True)
class Done:
    OP: ClassVar[str] = "done"
    report: Report

    def fields(self) -> dict[str, Any]:
        return asdict(self.report)

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Done:
        return cls(Report(**fields))


ToExecutor = Run | Abort | Uploaded | UploadFailed
FromExecutor = Upload | Output | Done
Message = ToExecutor | FromExecutor
_KINDS: dict[str, type[Message]] = {
    kind.OP: kind for kind in (Run, Abort, Uploaded, UploadFailed, Upload, Output, Done)
}


def encode(message: Message) -> bytes:
    """One JSON line."""
    fields = message.fields() if hasattr(message, "fields") else asdict(message)
    return (json.dumps({"op": message.OP, **fields}) + "\n").encode()


def decode(line: bytes | str) -> Message:
    """The message of one JSON line."""
    fields = json.loads(line)
    kind = _KINDS[fields.pop("op")]
    of = getattr(kind, "of", None)
    return of(fields) if of is not None else kind(**fields)
