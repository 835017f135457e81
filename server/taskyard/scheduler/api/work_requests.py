"""WorkRequestService: the client API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

from taskyard.errors import TaskyardError, invalid
from taskyard.limits import MAX_PAGE_BYTES
from taskyard.scheduler.api import convert
from taskyard.scheduler.api.access import Context, principal
from taskyard.scheduler.domain import Lease
from taskyard.scheduler.service.artifacts import Artifacts
from taskyard.scheduler.service.auth import Principal
from taskyard.scheduler.service.submission import SubmitSpec, Submitted
from taskyard.scheduler.service.task_logs import TaskLogs
from taskyard.scheduler.service.work_requests import WorkRequests
from taskyard.scheduler.store.port import WorkRequestFilter
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import work_requests_pb2_grpc


def _filter(states: Any, task_name: str, tenant: str) -> WorkRequestFilter:
    return WorkRequestFilter(
        states=frozenset(convert.STATES_FROM_PROTO[s] for s in states if s),
        task_name=task_name.lower(),
        tenant=tenant,
    )


def _list_filter(request: pb.ListRequest) -> WorkRequestFilter:
    after = request.created_after.ToDatetime(UTC) if request.HasField("created_after") else None
    before = request.created_before.ToDatetime(UTC) if request.HasField("created_before") else None
    return dataclasses.replace(
        _filter(request.states, request.task_name, request.tenant),
        worker_name=request.worker_name,
        owner=request.owner,
        results=frozenset(convert.RESULTS_FROM_PROTO[r] for r in request.results if r),
        created_after=after,
        created_before=before,
    )


def _batch_result(outcome: Submitted | TaskyardError) -> pb.BatchSubmitResult:
    if isinstance(outcome, TaskyardError):
        return pb.BatchSubmitResult(problem=convert.problem(outcome))
    return pb.BatchSubmitResult(
        work_request=convert.work_request_to_proto(outcome.work_request), created=outcome.created
    )


async def _specs(
    requests: AsyncIterator[pb.SubmitStreamRequest], caller: Principal
) -> AsyncIterator[SubmitSpec | TaskyardError]:
    """Each request of a stream as a spec, or as the reason it is refused:
    one bad message is that item's problem, not the stream's end."""
    while True:
        try:
            request = await anext(requests)
            yield convert.submit_spec(request.request, caller)
        except StopAsyncIteration:
            return
        except TaskyardError as error:
            yield error


def _stream_answer(index: int, answer: Submitted | TaskyardError) -> pb.SubmitStreamResponse:
    if isinstance(answer, TaskyardError):
        return pb.SubmitStreamResponse(index=index, problem=convert.problem(answer))
    return pb.SubmitStreamResponse(
        index=index,
        work_request=convert.work_request_to_proto(answer.work_request),
        created=answer.created,
    )


class WorkRequestServicer(work_requests_pb2_grpc.WorkRequestServiceServicer):
    """Submitting, inspecting and controlling work requests."""

    def __init__(self, work_requests: WorkRequests, artifacts: Artifacts, logs: TaskLogs) -> None:
        self._use = work_requests
        self._artifacts = artifacts
        self._logs = logs

    async def Submit(self, request: pb.SubmitRequest, context: Context) -> pb.SubmitResponse:
        submitted = await self._use.submit(convert.submit_spec(request, principal()))
        return pb.SubmitResponse(
            work_request=convert.work_request_to_proto(submitted.work_request),
            created=submitted.created,
        )

    async def BatchSubmit(
        self, request: pb.BatchSubmitRequest, context: Context
    ) -> pb.BatchSubmitResponse:
        caller = principal()
        specs = [convert.submit_spec(item, caller) for item in request.requests]
        outcomes = await self._use.batch_submit(specs)
        return pb.BatchSubmitResponse(results=[_batch_result(o) for o in outcomes])

    async def SubmitStream(
        self, requests: AsyncIterator[pb.SubmitStreamRequest], context: Context
    ) -> AsyncIterator[pb.SubmitStreamResponse]:
        answers = self._use.submit_stream(_specs(requests, principal()))
        index = 0
        async for answer in answers:
            yield _stream_answer(index, answer)
            index += 1

    async def Get(self, request: pb.GetRequest, context: Context) -> pb.GetResponse:
        caller = principal()
        work_request = convert.work_request_to_proto(await self._use.get(caller, request.id))
        found, _ = await self._artifacts.page(caller, work_request.id, "", 1000, "")
        after, dependents = await self._use.links(caller, request.id)
        response = pb.GetResponse(
            work_request=work_request,
            after=[convert.dependency_to_proto(d) for d in after],
            dependents=dependents,
        )
        budget = MAX_PAGE_BYTES - response.ByteSize()
        artifacts, _ = convert.fit(found, convert.artifact_to_proto, lambda a: a.id, budget)
        response.artifacts.extend(reversed(artifacts))
        return response

    async def List(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        where = _list_filter(request)
        page, next_token = await self._use.list(
            principal(), where, request.page_size, request.page_token
        )
        items, cut = convert.fit(page, convert.work_request_to_proto, lambda w: w.id)
        return pb.ListResponse(work_requests=items, next_page_token=cut or next_token)

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchResponse]:
        caller = principal()
        if request.id:
            changes = self._use.watch_one(caller, request.id)
        else:
            where = _filter(request.states, request.task_name, request.tenant)
            changes = self._use.watch(caller, where)
        async for change in changes:
            yield pb.WatchResponse(work_request=convert.work_request_to_proto(change))

    async def Abort(self, request: pb.AbortRequest, context: Context) -> pb.AbortResponse:
        work_request = await self._use.abort(principal(), request.id, request.reason)
        return pb.AbortResponse(work_request=convert.work_request_to_proto(work_request))

    async def Retry(self, request: pb.RetryRequest, context: Context) -> pb.RetryResponse:
        work_request = await self._use.retry(principal(), request.id)
        return pb.RetryResponse(work_request=convert.work_request_to_proto(work_request))

    async def Logs(
        self, request: pb.LogsRequest, context: Context
    ) -> AsyncIterator[pb.LogsResponse]:
        work_request = await self._use.get(principal(), request.id)
        attempt = request.attempt or work_request.attempt
        if attempt > work_request.attempt:
            raise invalid("attempt", f"{request.id} has had {work_request.attempt} attempt(s)")
        lease = Lease(work_request.id, attempt)
        async for offset, next_offset, stream, data in self._logs.read(
            lease, request.offset, request.follow
        ):
            yield pb.LogsResponse(
                attempt=attempt,
                offset=offset,
                next_offset=next_offset,
                stream=stream,  # type: ignore[arg-type]
                data=data,
            )

    async def GetPipeline(
        self, request: pb.GetPipelineRequest, context: Context
    ) -> pb.GetPipelineResponse:
        pipeline = await self._use.pipeline(principal(), request.id)
        return convert.pipeline_to_proto(pipeline)

    async def Explain(self, request: pb.ExplainRequest, context: Context) -> pb.ExplainResponse:
        work_request, explanation = await self._use.explain(principal(), request.id)
        return convert.explanation_to_proto(work_request, explanation)
