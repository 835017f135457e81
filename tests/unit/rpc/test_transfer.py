"""Uploads ride out a scheduler going away (another taking over)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from taskyard.errors import InvalidArgumentError
from taskyard.rpc import transfer
from taskyard.v1 import artifacts_pb2 as pb


def failure(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "cut off", None)


class FlakyArtifacts:
    """An artifact service whose first calls of each kind fail with given codes."""

    def __init__(self, **failures: list[grpc.StatusCode]) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self.keys: list[str] = []
        self.received = b""

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        if self.failures.get(method):
            raise failure(self.failures[method].pop(0))

    async def CreateArtifact(self, request: pb.CreateArtifactRequest, **_: Any) -> Any:
        self.keys.append(request.idempotency_key)
        self._maybe_fail("CreateArtifact")
        known = set(self.keys[:-1])  # a key given before names the artifact declared then
        number = len(known) + (request.idempotency_key not in known)
        artifact = pb.Artifact(id=f"a{number}", category=request.category)
        return pb.CreateArtifactResponse(artifact=artifact, missing_paths=["f"])

    async def QueryUploadStatus(self, request: pb.QueryUploadStatusRequest, **_: Any) -> Any:
        self._maybe_fail("QueryUploadStatus")
        return pb.QueryUploadStatusResponse(committed_size=len(self.received))

    async def UploadFile(self, chunks: AsyncIterator[pb.UploadFileRequest], **_: Any) -> Any:
        self._maybe_fail("UploadFile")
        async for chunk in chunks:
            assert chunk.offset == len(self.received)
            self.received += chunk.data
        return pb.UploadFileResponse(committed_size=len(self.received), artifact_complete=True)

    async def GetArtifact(self, request: pb.GetArtifactRequest, **_: Any) -> Any:
        self._maybe_fail("GetArtifact")
        return pb.GetArtifactResponse(artifact=pb.Artifact(id=request.artifact_id, complete=True))


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "wait_random_exponential", lambda **_: lambda _state: 0)


async def test_a_declaration_cut_off_is_repeated_with_its_key_and_the_upload_completes(
    tmp_path: Path,
) -> None:
    (tmp_path / "f").write_bytes(b"content")
    stub = FlakyArtifacts(
        CreateArtifact=[grpc.StatusCode.UNAVAILABLE], UploadFile=[grpc.StatusCode.UNAVAILABLE]
    )
    artifact = await transfer.upload(stub, (), category="c", files={"f": tmp_path / "f"})  # type: ignore[arg-type]
    assert (artifact.id, artifact.complete) == ("a1", True)
    assert stub.received == b"content"
    assert stub.calls.count("CreateArtifact") == 2
    assert stub.keys[0]
    assert set(stub.keys) == {stub.keys[0]}  # the repeat is the same declaration


async def test_a_refusal_is_not_tried_again(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"content")
    stub = FlakyArtifacts(CreateArtifact=[grpc.StatusCode.INVALID_ARGUMENT])
    with pytest.raises(InvalidArgumentError):
        await transfer.upload(stub, (), category="c", files={"f": tmp_path / "f"})  # type: ignore[arg-type]
    assert stub.calls == ["CreateArtifact"]
