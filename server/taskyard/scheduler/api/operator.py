"""OperatorService: workers, tasks, tokens and tenants."""

from __future__ import annotations

import json

from taskyard import limits
from taskyard.errors import invalid
from taskyard.scheduler.api import convert
from taskyard.scheduler.api.access import Context
from taskyard.scheduler.service.retention import Retention
from taskyard.scheduler.service.tenants import Tenants
from taskyard.scheduler.service.tokens import Tokens
from taskyard.scheduler.service.workers import Workers
from taskyard.tasks import Task
from taskyard.tasks.loading import origin_of
from taskyard.v1 import operator_pb2 as pb
from taskyard.v1 import operator_pb2_grpc


def task_info(task_class: type[Task]) -> pb.TaskInfo:
    """What an operator sees of a task."""
    doc = (task_class.__doc__ or "").strip().splitlines()
    return pb.TaskInfo(
        name=task_class.name,
        version=task_class.TASK_VERSION or 0,
        data_schema_json=json.dumps(task_class.TASK_DATA_SCHEMA, sort_keys=True),
        description=doc[0] if doc else "",
        package=origin_of(task_class.name),
    )


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    """Administration of workers, tasks and tokens."""

    def __init__(
        self, workers: Workers, tokens: Tokens, retention: Retention, tenants: Tenants
    ) -> None:
        self._workers = workers
        self._tokens = tokens
        self._retention = retention
        self._tenants = tenants

    def _worker(self, name: str) -> pb.Worker:
        for worker, connected, running in self._workers.list():
            if worker.name == name:
                return convert.worker_to_proto(worker, connected, running)
        return pb.Worker(name=name)

    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Context
    ) -> pb.ListWorkersResponse:
        found = [
            f
            for f in self._workers.list(request.connected_only)
            if not request.page_token or f[0].name > request.page_token
        ]
        page = found[: limits.page_size(request.page_size)]
        workers, cut = convert.fit(page, lambda f: convert.worker_to_proto(*f), lambda f: f[0].name)
        more = len(found) > len(page) and page[-1][0].name
        return pb.ListWorkersResponse(workers=workers, next_page_token=cut or more or "")

    async def EnableWorker(
        self, request: pb.EnableWorkerRequest, context: Context
    ) -> pb.EnableWorkerResponse:
        await self._workers.change(request.name, enabled=True)
        return pb.EnableWorkerResponse(worker=self._worker(request.name))

    async def DisableWorker(
        self, request: pb.DisableWorkerRequest, context: Context
    ) -> pb.DisableWorkerResponse:
        await self._workers.change(request.name, enabled=False)
        return pb.DisableWorkerResponse(worker=self._worker(request.name))

    async def SetWorkerMetadata(
        self, request: pb.SetWorkerMetadataRequest, context: Context
    ) -> pb.SetWorkerMetadataResponse:
        await self._workers.set_static_metadata(request.name, request.static_metadata_json)
        return pb.SetWorkerMetadataResponse(worker=self._worker(request.name))

    async def SetWorkerTaskFilter(
        self, request: pb.SetWorkerTaskFilterRequest, context: Context
    ) -> pb.SetWorkerTaskFilterResponse:
        await self._workers.set_task_filter(
            request.name, list(request.allowed_tasks), list(request.denied_tasks)
        )
        return pb.SetWorkerTaskFilterResponse(worker=self._worker(request.name))

    async def SetWorkerTenants(
        self, request: pb.SetWorkerTenantsRequest, context: Context
    ) -> pb.SetWorkerTenantsResponse:
        await self._workers.reserve_for(request.name, list(request.tenants))
        return pb.SetWorkerTenantsResponse(worker=self._worker(request.name))

    async def RefreshWorkerMetadata(
        self, request: pb.RefreshWorkerMetadataRequest, context: Context
    ) -> pb.RefreshWorkerMetadataResponse:
        self._workers.refresh_metadata(request.name)
        return pb.RefreshWorkerMetadataResponse(worker=self._worker(request.name))

    async def RemoveWorker(
        self, request: pb.RemoveWorkerRequest, context: Context
    ) -> pb.RemoveWorkerResponse:
        await self._workers.remove(request.name)
        return pb.RemoveWorkerResponse()

    async def Prune(self, request: pb.PruneRequest, context: Context) -> pb.PruneResponse:
        if not request.HasField("older_than"):
            raise invalid("older_than", "is required")
        pruned = await self._retention.prune(request.older_than.ToNanoseconds() / 1e9)
        return pb.PruneResponse(
            work_requests=pruned.work_requests, artifacts=pruned.artifacts, blobs=pruned.blobs
        )

    async def ListTasks(
        self, request: pb.ListTasksRequest, context: Context
    ) -> pb.ListTasksResponse:
        tasks = [task_info(Task.class_from_name(name)) for name in Task.task_names()]
        return pb.ListTasksResponse(tasks=tasks)

    async def CreateToken(
        self, request: pb.CreateTokenRequest, context: Context
    ) -> pb.CreateTokenResponse:
        role = convert.ROLES_FROM_PROTO.get(request.role)
        if role is None:
            raise invalid("role", "must be submit, admin or worker-activation")
        ttl = request.ttl.ToNanoseconds() / 1e9 if request.HasField("ttl") else None
        token, secret = await self._tokens.create(role, request.description, ttl, request.tenant)
        return pb.CreateTokenResponse(token=convert.token_to_proto(token), secret=secret)

    async def ListTokens(
        self, request: pb.ListTokensRequest, context: Context
    ) -> pb.ListTokensResponse:
        found = [
            t
            for t in sorted(await self._tokens.list(), key=lambda t: t.id, reverse=True)
            if not request.page_token or t.id < request.page_token
        ]
        page = found[: limits.page_size(request.page_size)]
        tokens, cut = convert.fit(page, convert.token_to_proto, lambda t: t.id)
        more = len(found) > len(page) and page[-1].id
        return pb.ListTokensResponse(tokens=tokens, next_page_token=cut or more or "")

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: Context
    ) -> pb.RevokeTokenResponse:
        token = await self._tokens.revoke(request.id)
        return pb.RevokeTokenResponse(token=convert.token_to_proto(token))

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: Context
    ) -> pb.ListTenantsResponse:
        found = await self._tenants.list()
        return pb.ListTenantsResponse(tenants=[convert.tenant_to_proto(*f) for f in found])

    async def SetTenant(
        self, request: pb.SetTenantRequest, context: Context
    ) -> pb.SetTenantResponse:
        tenant = await self._tenants.set(
            request.name,
            request.weight or 1.0,
            request.max_running or None,
            request.max_pending or None,
        )
        return pb.SetTenantResponse(tenant=convert.tenant_to_proto(*tenant))
