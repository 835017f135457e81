"""What an attempt needs on disk before its task runs, and its clean-up after.

Its working directory (fresh, removed after the attempt), the files of its
task data's `inputs` in `inputs/` there (each artifact downloaded, digest
checked, by the worker: a file two inputs both hold refuses the attempt),
and the root filesystem of its `environment` (held from the worker's cache
for the attempt). What cannot be had ends the attempt as an error saying
why, before the task starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from taskyard.errors import FailedPreconditionError, TaskyardError, UnavailableError
from taskyard.tasks.run_options import RunOptions
from taskyard.worker.files import remove_tree
from taskyard.worker.sandbox.environments import Environments

log = logging.getLogger(__name__)

#: Downloads an artifact's files into a directory; returns their paths.
Fetch = Callable[[str, Path], Awaitable[list[Path]]]


class Unprepared(Exception):
    """An attempt that cannot start: its error report's reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.report = {"reason": reason, "type": "", "message": message}


@dataclasses.dataclass
class Attempts:
    """Prepares attempts under `root`."""

    root: Path
    sandboxed: bool
    #: How artifacts reach this worker (set by the agent, which can fetch).
    fetch: Fetch | None = None
    environments: Environments | None = None

    @contextlib.asynccontextmanager
    async def prepared(self, job: Any) -> AsyncIterator[Any]:
        """`job` with its working directory and environment root, ready to
        run; everything removed or released when the block ends. Raises
        Unprepared."""
        work_dir = self.root / f"{job.work_request_id}.{job.attempt}"
        options = RunOptions.named_in(job.task_data_json)
        environment = options.environment if self.sandboxed else ""
        held = ""
        try:
            (work_dir / "inputs").mkdir(parents=True)
            await self._place_inputs(options.inputs, work_dir)
            root = ""
            if environment:
                root = str(await self._environment(environment))
                held = environment
            yield dataclasses.replace(job, work_dir=str(work_dir), environment_root=root)
        finally:
            if held and self.environments is not None:
                self.environments.release(held)
            await _removed(work_dir)

    async def _place_inputs(self, artifacts: tuple[str, ...], work_dir: Path) -> None:
        inputs = work_dir / "inputs"
        placed: dict[Path, str] = {}
        for number, artifact_id in enumerate(artifacts):
            staging = work_dir / f".input-{number}"
            try:
                files = await self._fetched(artifact_id, staging)
            except TaskyardError as error:
                why = f"input {artifact_id}: {error.message}"
                raise Unprepared("inputs-unavailable", why) from error
            for file in files:
                relative = file.relative_to(staging)
                if relative in placed:
                    raise Unprepared(
                        "inputs-unavailable",
                        f"inputs {placed[relative]} and {artifact_id} both hold {relative}",
                    )
                (inputs / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, inputs / relative)
                placed[relative] = artifact_id
            await asyncio.to_thread(remove_tree, staging)

    async def _fetched(self, artifact_id: str, directory: Path) -> list[Path]:
        if self.fetch is None:
            raise UnavailableError("this worker cannot fetch artifacts")
        directory.mkdir()
        return await self.fetch(artifact_id, directory)

    async def _environment(self, artifact_id: str) -> Path:
        try:
            if self.environments is None:
                raise FailedPreconditionError("this worker cannot fetch environments")
            return await self.environments.acquire(artifact_id)
        except TaskyardError as error:
            message = f"environment {artifact_id}: {error.message}"
            log.warning("%s", message)
            raise Unprepared("environment-unavailable", message) from error


async def _removed(work_dir: Path) -> None:
    """Remove an attempt's directory: at once when the task left nothing in
    it (most tasks that run no program), else in a thread (a build's tree)."""
    try:
        (work_dir / "inputs").rmdir()
        work_dir.rmdir()
    except OSError:
        await asyncio.to_thread(remove_tree, work_dir)
