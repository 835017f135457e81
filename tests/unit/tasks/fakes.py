"""Fakes for the Task library's ports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
