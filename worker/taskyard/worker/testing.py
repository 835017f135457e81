"""An in-process scheduler for tests of the worker agent (`SchedulerPort`).

It keeps what the worker sends and pushes what the test says, with no gRPC
and no database: the test plays the scheduler's part, message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2

from taskyard.errors import UnavailableError
from taskyard.v1 import common_pb2, workers_pb2


@dataclass
class FakeUpload:
    """An artifact the worker uploaded."""

    lease: common_pb2.Lease
    category: str
    contents: dict[str, bytes]
    data_json: str


@dataclass
class FakeScheduler:
    """Plays the scheduler for one worker."""

    heartbeat_interval: float = 0.05
    reachable: bool = True
    #: Names the worker registered under.
    registered: list[str] = field(default_factory=list)
    #: Sessions opened so far.
    sessions: int = 0
    uploads: list[FakeUpload] = field(default_factory=list)
    #: Artifacts the worker may download: id -> path -> content.
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    _received: asyncio.Queue[workers_pb2.SessionRequest] = field(default_factory=asyncio.Queue)
    _pushes: asyncio.Queue[workers_pb2.SessionResponse | None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_reachable(self, timeout: float = 2.0) -> None:
        if not self.reachable:
            raise UnavailableError("the fake scheduler is away")

    async def register(self, name: str, activation_token: str) -> tuple[str, bool]:
        self.registered.append(name)
        return name, True

    async def session(
        self, requests: AsyncIterator[workers_pb2.SessionRequest]
    ) -> AsyncIterator[workers_pb2.SessionResponse]:
        self.sessions += 1
        pushes = self._pushes = asyncio.Queue()
        reader = asyncio.create_task(self._read(requests))
        interval = duration_pb2.Duration()
        interval.FromNanoseconds(int(self.heartbeat_interval * 1e9))
        welcome = workers_pb2.SessionWelcome(worker_name="fake", heartbeat_interval=interval)
        self._connected.set()
        try:
            yield workers_pb2.SessionResponse(welcome=welcome)
            while (message := await pushes.get()) is not None:
                yield message
        finally:
            self._connected.clear()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, requests: AsyncIterator[workers_pb2.SessionRequest]) -> None:
        async for request in requests:
            await self._received.put(request)

    # -- The test's side ------------------------------------------------------

    async def connected(self) -> None:
        """Until a session is open."""
        await self._connected.wait()

    def push(self, **message: Any) -> None:
        """Send a message down the open session (`assignments=...`, `abort=...`)."""
        assert self._pushes is not None, "no session is open"
        self._pushes.put_nowait(workers_pb2.SessionResponse(**message))

    def end_session(self) -> None:
        """End the open session, as a scheduler going away would."""
        if self._pushes is not None:
            self._pushes.put_nowait(None)

    async def next(self, kind: str) -> Any:
        """The next message of `kind` the worker sent (`hello`, `reports`,
        `draining`...), skipping the others."""
        while True:
            request = await self._received.get()
            if request.WhichOneof("message") == kind:
                return getattr(request, kind)

    async def upload(
        self, lease: common_pb2.Lease, category: str, files: Mapping[str, Path], data_json: str
    ) -> str:
        contents = {name: path.read_bytes() for name, path in files.items()}
        self.uploads.append(FakeUpload(lease, category, contents, data_json))
        return f"fake-artifact-{len(self.uploads)}"

    async def download(self, artifact_id: str, directory: Path) -> list[Path]:
        written = []
        for name, content in self.artifacts[artifact_id].items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(content)
            written.append(directory / name)
        return written

    async def close(self) -> None:
        self.end_session()
