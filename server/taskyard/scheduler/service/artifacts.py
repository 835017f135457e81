"""Artifact use cases: declare, upload (resumable, verified), list, download."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta

from taskyard import limits
from taskyard.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    invalid,
)
from taskyard.limits import MAX_TTL
from taskyard.scheduler.blobs.port import BlobStore
from taskyard.scheduler.domain import ACTIVE_STATES, Artifact, ArtifactFile, Lease
from taskyard.scheduler.service import metrics
from taskyard.scheduler.service.artifact_rules import (
    MAX_CHUNK,
    RESERVED_PREFIX,
    Chunk,
    Limits,
    artifacts_named_by,
    check_manifest,
    check_uploader,
    io_error,
    upload_key,
)
from taskyard.scheduler.service.auth import (
    Principal,
    WorkerPrincipal,
    owner_of,
    sees,
    tenant_of,
)
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.dispatch import Guard
from taskyard.scheduler.service.work_requests import check_owner, key_reused
from taskyard.scheduler.store.port import StoreTransaction

log = logging.getLogger(__name__)


class Artifacts:
    """Artifacts over the store (records) and a blob store (contents)."""

    def __init__(self, core: Core, blobs: BlobStore, limits: Limits) -> None:
        self._core = core
        self._blobs = blobs
        self.limits = limits

    # -- Upload -----------------------------------------------------------

    async def create(
        self,
        caller: Principal,
        *,
        category: str,
        data_json: str,
        work_request_id: str,
        lease: Lease | None,
        files: list[ArtifactFile],
        expires_at: datetime | None,
        idempotency_key: str = "",
    ) -> tuple[Artifact, list[str]]:
        """Declare an artifact; return it and the paths whose content must be
        sent. With a key its caller gave before: the artifact declared then."""
        if not category:
            raise invalid("category", "is required")
        if len(idempotency_key) > 200:
            raise invalid("idempotency_key", "must be at most 200 characters")
        if not isinstance(json.loads(data_json or "{}"), dict):  # checked JSON at the edge
            raise invalid("data_json", "must be a JSON object")
        check_manifest(files, self.limits)
        now = self._core.clock()
        if expires_at is not None and not now < expires_at <= now + timedelta(seconds=MAX_TTL):
            raise invalid("expires_at", "must be in the future and at most 10 years ahead")
        tenant = await self._check_producer(caller, category, work_request_id, lease)
        owner = owner_of(caller)
        earlier = await self._by_key(owner, idempotency_key)
        if earlier is not None:
            return _declared_again(earlier, category, work_request_id, files)
        have = await asyncio.gather(
            *(asyncio.to_thread(self._blobs.has, f.sha256, f.size) for f in files)
        )
        files = [
            dataclasses.replace(f, complete=present) for f, present in zip(files, have, strict=True)
        ]
        await self._check_quota(caller, sum(f.size for f in files if not f.complete))
        artifact = Artifact(
            id=self._core.new_id(),
            category=category,
            created_at=self._core.clock(),
            files=tuple(sorted(files, key=lambda f: f.path)),
            data_json=data_json or "{}",
            work_request_id=work_request_id,
            expires_at=expires_at,
            created_by=owner,
            idempotency_key=idempotency_key,
            tenant=tenant,
        )
        try:
            await self._core.db.run(lambda tx: tx.insert_artifact(artifact))
        except AlreadyExistsError:  # the same key, declared at the same time elsewhere
            earlier = await self._by_key(owner, idempotency_key)
            if earlier is None:
                raise
            return _declared_again(earlier, category, work_request_id, files)
        return artifact, _missing(artifact)

    async def _by_key(self, owner: str, idempotency_key: str) -> Artifact | None:
        """The artifact `owner` declared with this key (None without a key)."""
        if not idempotency_key:
            return None
        return await self._core.db.run(lambda tx: tx.get_artifact_by_key(owner, idempotency_key))

    async def _check_quota(self, caller: Principal, wanted: int) -> None:
        """RESOURCE_EXHAUSTED if the caller's unfinished uploads would pass the quota."""
        if wanted == 0:
            return
        who = owner_of(caller)
        unfinished = await self._core.db.run(lambda tx: tx.incomplete_artifacts_of(who))
        pending = sum(f.size for a in unfinished for f in a.files if not f.complete)
        if pending + wanted > self.limits.upload_quota:
            raise ResourceExhaustedError(
                f"unfinished uploads would hold {pending + wanted} bytes; the quota is "
                f"{self.limits.upload_quota}: finish or let expire the ones under way",
                reason="UPLOAD_QUOTA",
            )

    async def _check_producer(
        self, caller: Principal, category: str, work_request_id: str, lease: Lease | None
    ) -> str:
        """Workers upload only for requests whose current lease they hold;
        clients only for their own requests (admins any), never in the
        reserved categories. Returns the tenant the artifact will belong to:
        its request's, else its uploader's (none, shared, for an admin)."""
        if isinstance(caller, WorkerPrincipal):
            current = self._core.dispatcher.active.get(work_request_id)
            holds = (
                current is not None
                and lease is not None
                and current.lease == lease
                and current.worker_name == caller.worker_name
                and current.state in ACTIVE_STATES
            )
            if current is None or not holds:
                raise PermissionDeniedError(
                    f"worker {caller.worker_name} does not hold the lease of {work_request_id!r}",
                    reason="LEASE_NOT_HELD",
                )
            return current.tenant
        if category.startswith(RESERVED_PREFIX):
            raise PermissionDeniedError(
                f"categories starting with {RESERVED_PREFIX!r} are for workers only",
                reason="CATEGORY_RESERVED",
            )
        if work_request_id:
            found = await self._core.db.run(lambda tx: tx.get_work_request(work_request_id))
            if found is None or not sees(caller, found.tenant):
                raise NotFoundError(
                    f"no work request {work_request_id!r}", reason="WORK_REQUEST_NOT_FOUND"
                )
            check_owner(caller, found)
            return found.tenant
        return tenant_of(caller) or ""

    async def _incomplete(
        self, caller: Principal, artifact_id: str, path: str
    ) -> tuple[Artifact, ArtifactFile]:
        artifact = await self._core.db.run(lambda tx: tx.get_artifact(artifact_id))
        if artifact is None:
            raise NotFoundError(f"no artifact {artifact_id!r}", reason="ARTIFACT_NOT_FOUND")
        file = artifact.file(path)
        if file is None:
            raise NotFoundError(
                f"artifact {artifact_id} has no file {path!r}", reason="FILE_NOT_FOUND"
            )
        check_uploader(caller, artifact)
        if isinstance(caller, WorkerPrincipal):
            current = self._core.dispatcher.active.get(artifact.work_request_id)
            if current is None or current.worker_name != caller.worker_name:
                raise PermissionDeniedError(
                    f"worker {caller.worker_name} no longer holds {artifact.work_request_id!r}",
                    reason="LEASE_NOT_HELD",
                )
        return artifact, file

    async def status(self, caller: Principal, artifact_id: str, path: str) -> tuple[int, bool]:
        """Committed bytes of a file, and whether it is complete."""
        artifact = await self._core.db.run(lambda tx: tx.get_artifact(artifact_id))
        file = artifact.file(path) if artifact else None
        if artifact is None or file is None:
            raise NotFoundError(
                f"no file {path!r} in artifact {artifact_id!r}", reason="FILE_NOT_FOUND"
            )
        check_uploader(caller, artifact)
        if file.complete:
            return file.size, True
        return await asyncio.to_thread(self._blobs.committed, upload_key(artifact_id, file)), False

    async def upload(self, caller: Principal, chunks: AsyncIterator[Chunk]) -> tuple[int, bool]:
        """Write a stream of chunks of one file; return the committed size and
        whether the artifact is now complete. A stream that ends without the
        last chunk leaves a resumable partial upload."""
        artifact: Artifact | None = None
        file: ArtifactFile | None = None
        key = ""
        committed = 0
        try:
            async for chunk in chunks:
                if artifact is None:
                    artifact, file = await self._incomplete(caller, chunk.artifact_id, chunk.path)
                    key = upload_key(artifact.id, file)
                    if file.complete:
                        return file.size, artifact.complete
                assert file is not None
                if (chunk.artifact_id or artifact.id, chunk.path or file.path) != (
                    artifact.id,
                    file.path,
                ):
                    raise invalid("path", "one upload stream carries one file", "WRONG_FILE")
                committed = await self._write(artifact, file, key, chunk)
                if chunk.finish:
                    return file.size, await self._finish(artifact, file, key)
        except InvalidArgumentError:
            # The uploader's stream broke the protocol: its upload goes whole.
            if artifact is not None:
                await self._abandon(artifact, key)
            raise
        return committed, False

    async def _write(self, artifact: Artifact, file: ArtifactFile, key: str, chunk: Chunk) -> int:
        if len(chunk.data) > MAX_CHUNK:
            raise invalid("data", f"chunks carry at most {MAX_CHUNK} bytes", "CHUNK_TOO_LARGE")
        if chunk.offset + len(chunk.data) > file.size:
            await self._abandon(artifact, key)
            raise invalid("data", f"more than the {file.size} bytes the manifest says", "TOO_LARGE")
        if not chunk.data:
            return await asyncio.to_thread(self._blobs.committed, key)
        try:
            size = await asyncio.to_thread(self._blobs.append, key, chunk.offset, chunk.data)
        except InvalidArgumentError:
            await self._abandon(artifact, key)
            raise
        except OSError as error:
            await self._abandon(artifact, key)
            raise io_error(error) from error
        metrics.artifact_bytes.add(
            len(chunk.data), {"taskyard.artifact.category": artifact.category}
        )
        return size

    async def _finish(self, artifact: Artifact, file: ArtifactFile, key: str) -> bool:
        try:
            await asyncio.to_thread(self._blobs.finish, key, file.sha256, file.size)
        except InvalidArgumentError:
            await self._abandon(artifact, key)
            raise
        except OSError as error:
            await self._abandon(artifact, key)
            raise io_error(error) from error

        def complete(tx: StoreTransaction) -> Artifact | None:
            tx.complete_file(artifact.id, file.path)
            return tx.get_artifact(artifact.id)

        updated = await self._core.db.run(complete)
        return bool(updated and updated.complete)

    async def _abandon(self, artifact: Artifact, key: str, guard: Guard | None = None) -> None:
        """A refused or failed upload leaves no partial content and no artifact."""
        for file in artifact.files:
            await asyncio.to_thread(self._blobs.discard, upload_key(artifact.id, file))

        def delete(tx: StoreTransaction) -> None:
            if guard is not None:
                guard(tx)
            tx.delete_artifact(artifact.id)

        await self._core.db.run(delete)
        log.info("artifact %s abandoned (upload %s refused or failed)", artifact.id, key)

    async def sweep(self, guard: Guard | None = None) -> int:
        """Remove uploads untouched for `partial_max_age`, with their artifacts
        (an artifact older than that whose upload still makes progress stays;
        each delete refused by `guard`, maintenance's lease, when it has gone)."""
        age = self.limits.partial_max_age
        cutoff = self._core.clock() - timedelta(seconds=age)
        old = await self._core.db.run(lambda tx: tx.incomplete_artifacts(cutoff))
        untouched = set(await asyncio.to_thread(self._blobs.partial_keys_older_than, age))
        stale = [a for a in old if not await self._progressing(a, untouched)]
        for artifact in stale:
            await self._abandon(artifact, "(stale)", guard)
        for key in untouched:
            await asyncio.to_thread(self._blobs.discard, key)
        return len(stale)

    async def _progressing(self, artifact: Artifact, untouched: set[str]) -> bool:
        """Whether a file of `artifact` received content within the max age."""
        for file in artifact.files:
            key = upload_key(artifact.id, file)
            if file.complete or key in untouched:
                continue
            if await asyncio.to_thread(self._blobs.committed, key) > 0:
                return True
        return False

    # -- Reading ----------------------------------------------------------

    async def get(self, caller: Principal, artifact_id: str) -> Artifact:
        """A complete artifact; NOT_FOUND until every file has arrived."""
        artifact = await self._core.db.run(lambda tx: tx.get_artifact(artifact_id))
        if artifact is None or not artifact.complete or not sees(caller, artifact.tenant):
            raise NotFoundError(f"no artifact {artifact_id!r}", reason="ARTIFACT_NOT_FOUND")
        self._check_reader(caller, artifact.work_request_id, artifact.id)
        return artifact

    def _check_reader(self, caller: Principal, work_request_id: str, artifact_id: str = "") -> None:
        """Clients read every artifact; a worker only those of work it holds,
        and the inputs and environments that work names."""
        if not isinstance(caller, WorkerPrincipal):
            return
        active = self._core.dispatcher.active
        current = active.get(work_request_id) if work_request_id else None
        if current is not None and current.worker_name == caller.worker_name:
            return
        held = (w for w in active.values() if w.worker_name == caller.worker_name)
        if artifact_id and any(artifact_id in artifacts_named_by(w) for w in held):
            return
        raise PermissionDeniedError(
            f"worker {caller.worker_name} reads only the artifacts of work it holds",
            reason="LEASE_NOT_HELD",
        )

    async def page(
        self,
        caller: Principal,
        work_request_id: str,
        category: str,
        page_size: int,
        page_token: str,
    ) -> tuple[list[Artifact], str]:
        """A page of the complete artifacts the caller sees, newest first,
        and the next page's token."""
        self._check_reader(caller, work_request_id)
        limit = limits.page_size(page_size)
        found = await self._core.db.run(
            lambda tx: tx.list_artifacts(
                work_request_id=work_request_id,
                category=category,
                limit=limit + 1,
                before_id=page_token,
                tenant=tenant_of(caller),
            )
        )
        return found[:limit], found[limit - 1].id if len(found) > limit else ""

    async def download(
        self, caller: Principal, artifact_id: str, paths: list[str]
    ) -> AsyncIterator[tuple[ArtifactFile | None, int, bytes]]:
        """Chunks of the chosen files (all when `paths` is empty), in path order;
        the first chunk of each file carries its manifest entry."""
        artifact = await self.get(caller, artifact_id)
        chosen = [f for f in artifact.files if not paths or f.path in paths]
        unknown = sorted(set(paths) - {f.path for f in chosen})
        if unknown:
            raise NotFoundError(
                f"artifact {artifact_id} has no files {unknown}", reason="FILE_NOT_FOUND"
            )
        for file in chosen:
            offset = 0
            yield file, 0, b""
            while offset < file.size:
                data = await asyncio.to_thread(
                    self._blobs.read, file.sha256, file.size, offset, MAX_CHUNK
                )
                yield None, offset, data
                offset += len(data)


def _missing(artifact: Artifact) -> list[str]:
    """The paths of an artifact whose content has not arrived."""
    return [f.path for f in artifact.files if not f.complete]


def _declared_again(
    earlier: Artifact, category: str, work_request_id: str, files: list[ArtifactFile]
) -> tuple[Artifact, list[str]]:
    """The artifact a repeated declaration names, if it is the same declaration."""

    def manifest(entries: Iterable[ArtifactFile]) -> list[tuple[str, int, str]]:
        return sorted((f.path, f.size, f.sha256) for f in entries)

    same = (earlier.category, earlier.work_request_id, manifest(earlier.files)) == (
        category,
        work_request_id,
        manifest(files),
    )
    if not same:
        raise key_reused(earlier.idempotency_key, "another artifact", earlier.id)
    return earlier, _missing(earlier)
