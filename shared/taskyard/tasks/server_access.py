"""What a running task needs from the scheduler, as a port.

The worker hands a task an implementation that talks to the scheduler over its
own connection; tests hand it a fake. Tasks never import gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class ServerAccess(Protocol):
    """The scheduler, as seen from inside a running task."""

    def upload_artifact(
        self,
        category: str,
        files: Mapping[str, Path],
        *,
        work_request_id: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> str:
        """Upload `files` as one artifact of `category` and return its id.

        `files` maps each file's relative path inside the artifact to the local
        file holding its content. `work_request_id` names the work request that
        produced the artifact (None outside one). Blocks until the artifact is
        complete on the scheduler; raises a `taskyard.errors.TaskyardError` if
        the upload is refused or cannot be completed.
        """
        ...
