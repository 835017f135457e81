"""Client use cases: submit, inspect, watch, abort, retry, explain."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

from taskyard import limits
from taskyard.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TaskyardError,
    invalid,
)
from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import (
    FINAL_STATES,
    Attempt,
    Dependency,
    Needs,
    Result,
    State,
    WorkRequest,
)
from taskyard.scheduler.explain import Explanation, explain
from taskyard.scheduler.matching import Shape
from taskyard.scheduler.service import pipelines
from taskyard.scheduler.service.auth import Principal, is_admin, owner_of, sees, tenant_of
from taskyard.scheduler.service.committer import to_the_end
from taskyard.scheduler.service.configured import configured, shape_of
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.dispatch import configured_task
from taskyard.scheduler.service.in_order import in_order
from taskyard.scheduler.service.messages import AbortReason
from taskyard.scheduler.service.observers import Observer
from taskyard.scheduler.service.submission import SubmitSpec, Submitted
from taskyard.scheduler.service.tenants import Tenants
from taskyard.scheduler.store.port import StoreTransaction, WorkRequestFilter
from taskyard.tasks import Task, TaskConfigError, UnknownTaskError
from taskyard.tasks.run_options import RunOptions

MAX_ATTEMPTS_LIMIT = 100

#: What a request waits for, and the ids of those waiting for it.
Links: TypeAlias = tuple[list[Dependency], list[str]]
#: Span attributes of refusal counts, by request shape.
Refusals: TypeAlias = dict[Shape, dict[str, int]]


def validate(spec: SubmitSpec) -> Task:
    """Check a submission; return its task configured with its data.

    Raises InvalidArgumentError with one field violation per problem.
    """
    try:
        task = configured(spec.task_name, spec.task_data_json)
    except UnknownTaskError as error:
        raise InvalidArgumentError(
            error.message,
            reason=error.reason,
            metadata=error.metadata,
            violations=[FieldViolation("task_name", error.message)],
        ) from error
    except json.JSONDecodeError as error:
        raise invalid("task_data_json", f"not valid JSON: {error}", "TASK_DATA_INVALID") from error
    except TaskConfigError as error:
        raise InvalidArgumentError(
            error.message,
            reason=error.reason,
            metadata={"task_name": error.task_name},
            violations=[
                FieldViolation("task_data_json" + v.field[1:], v.description)
                for v in error.violations
            ],
        ) from error
    if spec.timeout_seconds is not None and spec.timeout_seconds <= 0:
        raise invalid("timeout", "must be positive")
    if not 0 <= spec.max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise invalid("max_attempts", f"must be between 0 and {MAX_ATTEMPTS_LIMIT}")
    if len(spec.idempotency_key) > 200:
        raise invalid("idempotency_key", "must be at most 200 characters")
    return task


class WorkRequests:
    """The client-facing use cases."""

    def __init__(self, core: Core, tenants: Tenants) -> None:
        self._core = core
        self._tenants = tenants
        #: What follows each submission (tracing, when configured).
        self.observer = Observer()

    async def submit(self, spec: SubmitSpec) -> Submitted:
        """Validate, store (acknowledged once committed) and queue one request.

        An observer's trace context (the submit span's) is stored with the
        request: its whole life (every attempt) is one trace.
        """
        if pipelines.waits(_item(spec)):
            [submitted] = await self._submit_pipeline([spec], batch=False)
            return submitted
        return await self._submit(spec, {})

    async def _submit(self, spec: SubmitSpec, refusals: Refusals) -> Submitted:
        with self.observer.submitting(spec.task_name) as watch:
            task = validate(spec)
            submitted = await self._store(spec, task, watch.trace_context())
            watch.stored(submitted, lambda: self._refusals(submitted.work_request, task, refusals))
            return submitted

    def _refusals(self, work_request: WorkRequest, task: Task, known: Refusals) -> dict[str, int]:
        """Why no worker took the pending request at once, counting the
        workers by reason; kept in `known` for others of its shape."""
        shape = shape_of(work_request)
        found = known.get(shape)
        if found is None:
            found = known[shape] = self._core.dispatcher.refusals(task, shape)
        return found

    async def batch_submit(self, specs: Sequence[SubmitSpec]) -> list[Submitted | TaskyardError]:
        """Submit several requests; each succeeds or fails on its own,
        unless they wait for one another: then all or nothing."""
        if len(specs) > limits.MAX_BATCH:
            raise invalid("requests", f"at most {limits.MAX_BATCH:,} requests per batch")
        if any(pipelines.waits(_item(spec)) for spec in specs):
            return list(await self._submit_pipeline(specs, batch=True))

        # The requests of a batch are committed together: those left pending
        # share, per shape, the refusal counts of that moment (counting every
        # worker for each of them would cost a traced submit more than its spans).
        refusals: Refusals = {}

        async def one(spec: SubmitSpec) -> Submitted | TaskyardError:
            try:
                return await self._submit(spec, refusals)
            except TaskyardError as error:
                return error

        return list(await asyncio.gather(*(one(spec) for spec in specs)))

    def submit_stream(
        self, items: AsyncIterator[SubmitSpec | TaskyardError]
    ) -> AsyncIterator[Submitted | TaskyardError]:
        """Submit each request as it arrives, those read together committed
        together; answer each, in order, once committed or refused (an item
        the edge refused already is answered with its problem)."""

        async def one(item: SubmitSpec | TaskyardError) -> Submitted | TaskyardError:
            if isinstance(item, TaskyardError):
                return item
            try:
                return await self.submit(item)
            except TaskyardError as error:
                return error

        return in_order(items, one)

    async def _submit_pipeline(self, specs: Sequence[SubmitSpec], batch: bool) -> list[Submitted]:
        """Validate, plan and store requests that wait for one another or for
        stored ones: all of them, or none (INVALID_ARGUMENT naming the item)."""
        core = self._core
        tasks = [_validated(spec, index, batch) for index, spec in enumerate(specs)]
        tenants = {spec.tenant for spec in specs}
        if len(tenants) > 1:
            raise invalid("requests", "the requests of one batch that wait for one another "
                          "must be of one tenant")  # fmt: skip
        ids = [core.new_id() for _ in specs]
        planned = pipelines.plan([_item(spec) for spec in specs], ids, batch)
        with contextlib.ExitStack() as stack:
            watches = [stack.enter_context(self.observer.submitting(s.task_name)) for s in specs]
            new = [
                (_new_request(core, dataclasses.replace(spec, task_data_json=p.task_data_json),
                              task, work_request_id, w.trace_context()), p)
                for spec, task, work_request_id, p, w
                in zip(specs, tasks, ids, planned, watches, strict=True)
            ]  # fmt: skip
            now = core.clock()

            def store(tx: StoreTransaction) -> tuple[list[WorkRequest], bool]:
                replayed = _replayed(tx, [w for w, _ in new])
                if replayed is not None:
                    return replayed, False
                for (work_request, _), task in zip(new, tasks, strict=True):
                    _check_artifacts(tx, task.run_options, work_request.tenant)
                return pipelines.admit(tx, new, now), True

            async def commit() -> list[Submitted]:
                stored, created = await core.db.run(store)
                submitted = [Submitted(w, created) for w in stored]
                for one, task in zip(submitted, tasks, strict=True):
                    if created and one.work_request.state is State.PENDING:
                        core.dispatcher.enqueue(one.work_request, task)
                    if created:
                        core.feed.publish(one.work_request)
                return submitted

            with self._tenants.admitting(tenants.pop(), len(specs)):
                submitted = await to_the_end(commit())
            for one, watch in zip(submitted, watches, strict=True):
                watch.stored(one, dict)
        return submitted

    async def _store(
        self, spec: SubmitSpec, task: Task, trace_context: dict[str, str]
    ) -> Submitted:
        try:
            with self._tenants.admitting(spec.tenant):
                return await to_the_end(self._queue(spec, task, trace_context))
        except ResourceExhaustedError:
            replayed = await self._replay(spec, task)  # its first submission got in
            if replayed is None:
                raise
            return replayed

    async def _replay(self, spec: SubmitSpec, task: Task) -> Submitted | None:
        """What an earlier submission with the same key created, if any."""
        if not spec.idempotency_key:
            return None
        found = await self._core.db.run(
            lambda tx: tx.get_work_request_by_idempotency_key(spec.tenant, spec.idempotency_key)
        )
        if found is None:
            return None
        _check_same_submission(found, task, spec)
        return Submitted(found, created=False)

    async def _queue(
        self, spec: SubmitSpec, task: Task, trace_context: dict[str, str]
    ) -> Submitted:
        core = self._core
        work_request = _new_request(core, spec, task, core.new_id(), trace_context)
        dispatcher = core.dispatcher
        reserved = dispatcher.reserve(task, shape_of(work_request), work_request.tenant)
        worker, decision = reserved or (None, None)
        if worker is not None:  # an idle worker suits it: assign in the same commit
            worker.busy.add(work_request.id)
            work_request = lifecycle.assign(work_request, worker.worker.name, core.clock())
        try:
            stored = await core.db.run(lambda tx: _insert_once(tx, work_request, task))
        finally:
            if worker is not None:
                worker.busy.discard(work_request.id)
        if stored.id != work_request.id:
            _check_same_submission(stored, task, spec)
            return Submitted(stored, created=False)
        if worker is not None and decision is not None:
            dispatcher.assigned(worker, stored, stored.created_at, decision)
        else:
            dispatcher.enqueue(stored, task)
            core.feed.publish(stored)
        return Submitted(stored, created=True)

    async def get(self, viewer: Principal, work_request_id: str) -> WorkRequest:
        """One work request; NOT_FOUND if there is none, or if it is another
        tenant's (it does not exist, as far as the viewer can tell)."""
        found = await self._core.db.run(lambda tx: tx.get_work_request(work_request_id))
        if found is None or not sees(viewer, found.tenant):
            raise NotFoundError(
                f"no work request {work_request_id!r}",
                reason="WORK_REQUEST_NOT_FOUND",
                metadata={"id": work_request_id},
            )
        return found

    async def list(
        self, viewer: Principal, where: WorkRequestFilter, page_size: int, page_token: str
    ) -> tuple[list[WorkRequest], str]:
        """A page of matching requests the viewer sees, newest first, and the
        next page's token."""
        if page_size < 0:
            raise invalid("page_size", "must not be negative")
        scoped = _scoped(viewer, where)
        if scoped is None:
            return [], ""
        limit = limits.page_size(page_size)
        found = await self._core.db.run(
            lambda tx: tx.list_work_requests(scoped, limit=limit + 1, before_id=page_token)
        )
        page = found[:limit]
        return page, page[-1].id if len(found) > limit else ""

    async def counts(self, viewer: Principal) -> dict[tuple[State, str], int]:
        """How many requests the viewer sees, by state and task."""
        tenant = tenant_of(viewer) or ""
        return await self._core.db.run(lambda tx: tx.count_work_requests(tenant))

    async def attempts(self, viewer: Principal, work_request_id: str) -> Sequence[Attempt]:
        """The ended attempts of a request, first first."""
        await self.get(viewer, work_request_id)
        return await self._core.db.run(lambda tx: tx.attempts_of(work_request_id))

    async def watch_one(
        self, viewer: Principal, work_request_id: str
    ) -> AsyncIterator[WorkRequest]:
        """The request as it is now, then each change until it is final."""
        with self._core.feed.subscribe(lambda w: w.id == work_request_id) as changes:
            current = await self.get(viewer, work_request_id)
            yield current
            if current.state in FINAL_STATES:
                return
            seen = current.updated_at
            said = _state_of(current)
            async for change in changes:
                # Changes committed before `current` was read are already in it.
                if seen is not None and change.updated_at is not None and change.updated_at <= seen:
                    continue
                if _state_of(change) == said:  # not a change of state (an abort asked, say)
                    continue
                said = _state_of(change)
                yield change
                if change.state in FINAL_STATES:
                    return

    async def watch(
        self, viewer: Principal, where: WorkRequestFilter
    ) -> AsyncIterator[WorkRequest]:
        """Every change of a request matching `where` that the viewer sees,
        until the caller stops."""
        scoped = _scoped(viewer, where)
        if scoped is None:  # another tenant's: nothing will ever match
            scoped = WorkRequestFilter(tenant=_NO_TENANT)
        with self._core.feed.subscribe(scoped.matches) as changes:
            async for change in changes:
                yield change

    async def owned(self, caller: Principal, work_request_id: str) -> WorkRequest:
        """A request the caller may control: its own, or any for an admin."""
        current = await self.get(caller, work_request_id)
        check_owner(caller, current)
        return current

    async def abort(self, caller: Principal, work_request_id: str, reason: str = "") -> WorkRequest:
        """Abort a pending request at once, or tell the worker of an active one."""
        core = self._core
        current = await self.owned(caller, work_request_id)
        now = core.clock()
        message = reason or "aborted by a user"
        if current.state in (State.PENDING, State.BLOCKED):
            aborted = lifecycle.abort(current, now, message)
            if await core.dispatcher.commit(current, aborted):
                return aborted
            return await self.abort(caller, work_request_id, reason)
        if current.state in FINAL_STATES:
            raise FailedPreconditionError(
                f"work request {work_request_id} is {current.state} already",
                reason="WORK_REQUEST_FINISHED",
            )
        requested = current.with_changes(abort_requested_at=now, updated_at=now)
        if not await core.dispatcher.commit(current, requested):
            return await self.abort(caller, work_request_id, reason)
        core.dispatcher.send_abort(requested, AbortReason.USER, message)
        return requested

    async def retry(self, caller: Principal, work_request_id: str) -> WorkRequest:
        """Start a new attempt of a failed, errored or aborted request (same id)."""
        core = self._core
        current = await self.owned(caller, work_request_id)
        retryable = current.state is State.ABORTED or (
            current.state is State.COMPLETED and current.result in {Result.FAILURE, Result.ERROR}
        )
        if not retryable:
            what = f"{current.state} ({current.result})" if current.result else str(current.state)
            raise FailedPreconditionError(
                f"only failed, errored or aborted requests can be retried; "
                f"{work_request_id} is {what}",
                reason="NOT_RETRYABLE",
            )
        waiting = await core.db.run(lambda tx: pipelines.unmet(tx, current))
        if waiting:
            raise FailedPreconditionError(
                f"work request {work_request_id} waits for {_listed_waits(waiting)}: "
                "retry it once those have ended as it needs (a failed one, retry first)",
                reason="DEPENDENCY_NOT_MET",
            )
        again = lifecycle.retry(
            current, core.clock(), core.new_id(), core.settings.default_max_attempts
        )
        if not await core.dispatcher.commit(current, again):
            raise FailedPreconditionError(
                f"work request {work_request_id} changed meanwhile; try again", reason="CONFLICT"
            )
        return again

    async def explain(
        self, viewer: Principal, work_request_id: str
    ) -> tuple[WorkRequest, Explanation]:
        """Why each known worker is or is not running the request."""
        current = await self.get(viewer, work_request_id)
        task = configured_task(current)
        dispatcher = self._core.dispatcher
        statuses = [live.status() for live in dispatcher.workers.values()]
        held_back = ""
        waiting: Sequence[tuple[Dependency, WorkRequest]] = ()
        if current.state is State.BLOCKED:
            waiting = await self._core.db.run(lambda tx: pipelines.unmet(tx, current))
            held_back = "Blocked: it waits for " + _listed_waits(waiting)
        elif current.state is State.PENDING and dispatcher.at_ceiling(current.tenant):
            ceiling = dispatcher.tenants[current.tenant].max_running
            held_back = f"Tenant {current.tenant} is at its limit of {ceiling} running"
        waits = [dependency for dependency, _ in waiting]
        return current, explain(task, statuses, current.tenant, held_back, waits)

    async def links(self, viewer: Principal, work_request_id: str) -> Links:
        """What a request waits for, and what waits for it (ids, oldest first)."""
        await self.get(viewer, work_request_id)

        def read(tx: StoreTransaction) -> Links:
            after = tx.dependencies_of([work_request_id]).get(work_request_id, [])
            below = sorted(child for child, _ in tx.waiting_on([work_request_id]))
            return after, below

        return await self._core.db.run(read)

    async def pipeline(self, viewer: Principal, work_request_id: str) -> pipelines.Pipeline:
        """The pipeline a request is part of."""
        await self.get(viewer, work_request_id)
        return await self._core.db.run(
            lambda tx: pipelines.component(tx, work_request_id, limits.MAX_PIPELINE)
        )


#: No tenant has this name (it is not a valid one).
_NO_TENANT = "-"


def _listed_waits(waiting: Sequence[tuple[Dependency, WorkRequest]]) -> str:
    """`the success of ID (running), the end of ID (pending)`."""
    return ", ".join(
        f"the {'success' if d.needs is Needs.SUCCESS else 'end'} of {p.id} "
        f"({p.task_name}, {p.result or p.state})"
        for d, p in waiting
    )


def _item(spec: SubmitSpec) -> pipelines.Item:
    return pipelines.Item(spec.ref, spec.after, spec.task_data_json)


def _new_request(
    core: Core, spec: SubmitSpec, task: Task, work_request_id: str, trace_context: dict[str, str]
) -> WorkRequest:
    """A new request of `spec` for the configured `task`, not yet stored."""
    return WorkRequest(
        id=work_request_id,
        task_name=task.name,
        task_data_json=spec.task_data_json or "{}",
        priority=spec.priority,
        created_at=core.clock(),
        queue_key=work_request_id,
        max_attempts=spec.max_attempts or core.settings.default_max_attempts,
        timeout_seconds=spec.timeout_seconds,
        idempotency_key=spec.idempotency_key,
        trace_context=trace_context,
        owner=spec.owner,
        tenant=spec.tenant,
    )


def _validated(spec: SubmitSpec, index: int, batch: bool) -> Task:
    """`validate`, its fields named within the batch (`requests[N].`)."""
    try:
        return validate(spec)
    except InvalidArgumentError as error:
        if not batch:
            raise
        raise InvalidArgumentError(
            f"requests[{index}]: {error.message}",
            reason=error.reason,
            metadata=error.metadata,
            violations=[
                FieldViolation(f"requests[{index}].{v.field}", v.description)
                for v in error.violations
            ],
        ) from error


def _replayed(tx: StoreTransaction, new: Sequence[WorkRequest]) -> list[WorkRequest] | None:
    """What an earlier submission of the same pipeline (the same idempotency
    keys) stored, or None if there was none; FAILED_PRECONDITION if only
    some of the keys were used."""
    keyed = [w for w in new if w.idempotency_key]
    if not keyed:
        return None
    found = [tx.get_work_request_by_idempotency_key(w.tenant, w.idempotency_key) for w in keyed]
    if not any(found):
        return None
    first = next(f for f in found if f is not None)
    if len(keyed) != len(new) or not all(found):
        raise key_reused(first.idempotency_key, "another submission", first.id)
    return [f for f in found if f is not None]


def _scoped(viewer: Principal, where: WorkRequestFilter) -> WorkRequestFilter | None:
    """`where`, held to the viewer's tenant; None if it asks for another's."""
    scope = tenant_of(viewer)
    if scope is None:
        return where
    if where.tenant and where.tenant != scope:
        return None
    return dataclasses.replace(where, tenant=scope)


def _state_of(work_request: WorkRequest) -> tuple[State, Result, int]:
    return work_request.state, work_request.result, work_request.attempt


def check_owner(caller: Principal, work_request: WorkRequest) -> None:
    """PERMISSION_DENIED unless `caller` submitted the request or is an admin."""
    if not is_admin(caller) and work_request.owner != owner_of(caller):
        raise PermissionDeniedError(
            f"work request {work_request.id} belongs to another token; "
            "only its owner or an admin may change it",
            reason="NOT_OWNER",
            metadata={"id": work_request.id},
        )


def _insert_once(tx: StoreTransaction, work_request: WorkRequest, task: Task) -> WorkRequest:
    """Insert, or return the request an earlier submit with the same key created."""
    if work_request.idempotency_key:
        existing = tx.get_work_request_by_idempotency_key(
            work_request.tenant, work_request.idempotency_key
        )
        if existing is not None:
            return existing
    _check_artifacts(tx, task.run_options, work_request.tenant)
    tx.insert_work_request(work_request)
    tx.announce("request", work_request.id)
    return work_request


def _check_artifacts(tx: StoreTransaction, options: RunOptions, tenant: str) -> None:
    """The inputs and the environment a request names must be complete
    artifacts of its tenant (or shared with every tenant)."""
    named = [(f"inputs[{n}].artifact", a, "INPUT") for n, a in enumerate(options.inputs)]
    if options.environment:
        named.append(("environment", options.environment, "ENVIRONMENT"))
    for field, artifact_id, what in named:
        artifact = tx.get_artifact(artifact_id)
        if artifact is None or not artifact.complete or artifact.tenant not in (tenant, ""):
            raise invalid(
                f"task_data_json.{field}",
                f"no artifact {artifact_id!r} (upload it first)",
                f"{what}_NOT_FOUND",
            )


def _check_same_submission(stored: WorkRequest, task: Task, new: SubmitSpec) -> None:
    """An idempotency key must not be reused for a different submission."""
    same = (stored.task_name, _parsed(stored.task_data_json), stored.priority) == (
        task.name,
        _parsed(new.task_data_json or "{}"),
        new.priority,
    )
    if not same:
        raise key_reused(new.idempotency_key, "a different submission", stored.id)


def key_reused(key: str, what: str, earlier_id: str) -> FailedPreconditionError:
    """The error of an idempotency key given again for something else."""
    return FailedPreconditionError(
        f"idempotency key {key!r} was used for {what} ({earlier_id})",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"id": earlier_id},
    )


def _parsed(text: str) -> Any:
    return json.loads(text)
