"""ArtifactService: declare, upload, query, list and download artifacts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

from taskyard.scheduler.api import convert
from taskyard.scheduler.api.access import Context, principal
from taskyard.scheduler.service.artifact_rules import Chunk
from taskyard.scheduler.service.artifacts import Artifacts
from taskyard.v1 import artifacts_pb2 as pb
from taskyard.v1 import artifacts_pb2_grpc


async def _chunks(requests: AsyncIterator[pb.UploadFileRequest]) -> AsyncIterator[Chunk]:
    async for request in requests:
        yield Chunk(
            request.artifact_id, request.path, request.offset, request.data, request.finish_write
        )


class ArtifactServicer(artifacts_pb2_grpc.ArtifactServiceServicer):
    """Artifacts over gRPC."""

    def __init__(self, artifacts: Artifacts) -> None:
        self._use = artifacts

    async def CreateArtifact(
        self, request: pb.CreateArtifactRequest, context: Context
    ) -> pb.CreateArtifactResponse:
        artifact, missing = await self._use.create(
            principal(),
            category=request.category,
            data_json=request.data_json,
            work_request_id=request.work_request_id,
            lease=convert.lease_from_proto(request.lease) if request.HasField("lease") else None,
            files=[convert.artifact_file_from_proto(f) for f in request.files],
            expires_at=request.expires_at.ToDatetime(UTC)
            if request.HasField("expires_at")
            else None,
            idempotency_key=request.idempotency_key,
        )
        return pb.CreateArtifactResponse(
            artifact=convert.artifact_to_proto(artifact), missing_paths=missing
        )

    async def UploadFile(
        self, request_iterator: AsyncIterator[pb.UploadFileRequest], context: Context
    ) -> pb.UploadFileResponse:
        committed, complete = await self._use.upload(principal(), _chunks(request_iterator))
        return pb.UploadFileResponse(committed_size=committed, artifact_complete=complete)

    async def QueryUploadStatus(
        self, request: pb.QueryUploadStatusRequest, context: Context
    ) -> pb.QueryUploadStatusResponse:
        committed, complete = await self._use.status(principal(), request.artifact_id, request.path)
        return pb.QueryUploadStatusResponse(committed_size=committed, complete=complete)

    async def GetArtifact(
        self, request: pb.GetArtifactRequest, context: Context
    ) -> pb.GetArtifactResponse:
        artifact = await self._use.get(principal(), request.artifact_id)
        return pb.GetArtifactResponse(artifact=convert.artifact_to_proto(artifact))

    async def ListArtifacts(
        self, request: pb.ListArtifactsRequest, context: Context
    ) -> pb.ListArtifactsResponse:
        page, token = await self._use.page(
            principal(),
            request.work_request_id,
            request.category,
            request.page_size,
            request.page_token,
        )
        artifacts, cut = convert.fit(page, convert.artifact_to_proto, lambda a: a.id)
        return pb.ListArtifactsResponse(artifacts=artifacts, next_page_token=cut or token)

    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: Context
    ) -> AsyncIterator[pb.DownloadArtifactResponse]:
        async for file, offset, data in self._use.download(
            principal(), request.artifact_id, list(request.paths)
        ):
            if file is not None:
                yield pb.DownloadArtifactResponse(file=convert.artifact_file_to_proto(file))
            else:
                yield pb.DownloadArtifactResponse(offset=offset, data=data)
