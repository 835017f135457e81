"""Pipelines: requests that wait for others, and take their artifacts.

A request that waits (`Dependency`) is stored BLOCKED with the count of its
dependencies not yet met (`waiting`). Everything here runs inside the
transaction that changes a request, so a pipeline moves on in the same
commit that ends a request, with nothing to sweep and nothing lost to a
crash:

- `plan` turns a batch's references into ids and refuses cycles (pure);
- `admit` records new requests and what they wait for;
- `release` follows an ended request downstream: a dependency met counts
  down, and at none left the request is PENDING with its inputs resolved; a
  success needed and not had aborts the request, and so on further down;
- `reblock` follows a retried request downstream: what was aborted because
  of it waits again.

In PostgreSQL, the rows read here are locked, so that two schedulers ending
two parents of one request count it down twice, and a request recorded as
waiting for one that is ending is seen by that end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskyard.errors import FailedPreconditionError, invalid
from taskyard.limits import MAX_INPUTS
from taskyard.scheduler.domain import (
    FINAL_STATES,
    Dependency,
    Needs,
    Result,
    State,
    WorkError,
    WorkRequest,
)
from taskyard.scheduler.store.port import StoreTransaction
from taskyard.tasks.base import DEBUG_LOGS_CATEGORY

#: The error of a request aborted because one it needed the success of did not succeed.
DEPENDENCY_FAILED = "dependency-failed"
#: Its inputs could not be had when it unblocked.
INPUTS_UNAVAILABLE = "inputs-unavailable"


@dataclass(frozen=True)
class Planned:
    """One request of a batch, its references resolved to ids."""

    #: What it waits for, by id (duplicates merged: success wins).
    after: tuple[Dependency, ...]
    #: Its task data, `inputs` naming requests by id.
    task_data_json: str
    #: Where each id it waits for was named (a field path), for errors.
    named_at: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """What `plan` needs of one submission."""

    ref: str
    after: Sequence[Dependency]
    task_data_json: str


def waits(item: Item) -> bool:
    """Whether a submission takes part in a pipeline (task data is parsed
    only when it may name a request)."""
    if item.ref or item.after:
        return True
    return '"request"' in item.task_data_json and bool(_input_requests(_data(item.task_data_json)))


def plan(items: Sequence[Item], ids: Sequence[str], batch: bool = True) -> list[Planned]:
    """Resolve a batch's references (`ref`s of its items) to `ids`, one per
    item; INVALID_ARGUMENT naming the field (`requests[N].` first in a
    `batch`) for a duplicate ref, a request waiting for itself, a resolved
    input given, or a cycle (naming it)."""
    refs: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.ref and item.ref in refs:
            raise invalid(
                f"{_at(index, batch)}ref", f"{item.ref!r} names requests[{refs[item.ref]}] too"
            )
        if item.ref:
            refs[item.ref] = index
    planned = [_resolve(index, item, refs, ids, batch) for index, item in enumerate(items)]
    _refuse_cycles(items, planned, ids)
    return planned


def _at(index: int, batch: bool) -> str:
    return f"requests[{index}]." if batch else ""


def _resolve(
    index: int, item: Item, refs: dict[str, int], ids: Sequence[str], batch: bool
) -> Planned:
    def target(name: str) -> str:
        return ids[refs[name]] if name in refs else name

    after: dict[str, Dependency] = {}
    named_at: dict[str, str] = {}

    def wait(on: str, needs: Needs, where: str) -> None:
        if on == ids[index]:
            raise invalid(where, "a request cannot wait for itself")
        known = after.get(on)
        if known is None or needs is Needs.SUCCESS:
            after[on] = Dependency(on, needs)
        named_at.setdefault(on, where)

    for position, dependency in enumerate(item.after):
        wait(target(dependency.on), dependency.needs, f"{_at(index, batch)}after[{position}].on")
    data = _data(item.task_data_json)
    inputs = data.get("inputs", []) if isinstance(data, dict) else []
    for position, entry in enumerate(inputs):
        if not isinstance(entry, dict) or "request" not in entry:
            continue
        where = f"{_at(index, batch)}task_data_json.inputs[{position}]"
        if "artifacts" in entry:
            raise invalid(f"{where}.artifacts", "is set by the scheduler when the request unblocks")
        entry["request"] = target(entry["request"])
        if entry["request"] not in after:  # an input needs its request's success
            wait(entry["request"], Needs.SUCCESS, f"{where}.request")
    text = json.dumps(data) if inputs else item.task_data_json
    return Planned(tuple(after.values()), text, named_at)


def _refuse_cycles(items: Sequence[Item], planned: Sequence[Planned], ids: Sequence[str]) -> None:
    """INVALID_ARGUMENT naming a cycle among the batch's own requests, if any."""
    position = {work_request_id: index for index, work_request_id in enumerate(ids)}
    edges = [[position[d.on] for d in p.after if d.on in position] for p in planned]
    state = [0] * len(items)  # 0 unseen, 1 on the path, 2 done
    for start in range(len(items)):
        if state[start]:
            continue
        path, stack = [start], [iter(edges[start])]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[step] == 1:
                cycle = [*path[path.index(step) :], step]
                named = " -> ".join(items[i].ref or f"requests[{i}]" for i in cycle)
                raise invalid(f"requests[{step}].after", f"the batch waits in a cycle: {named}")
            elif state[step] == 0:
                state[step] = 1
                path.append(step)
                stack.append(iter(edges[step]))


def admit(
    tx: StoreTransaction, planned: Sequence[tuple[WorkRequest, Planned]], now: datetime
) -> list[WorkRequest]:
    """Store new requests of one tenant with what they wait for: BLOCKED
    while some of it is not met, PENDING (inputs resolved) otherwise.
    INVALID_ARGUMENT for an unknown id (or another tenant's);
    FAILED_PRECONDITION for a success awaited of one that failed."""
    batch = {work_request.id for work_request, _ in planned}
    outside = {d.on: p.named_at[d.on] for _, p in planned for d in p.after if d.on not in batch}
    tenant = planned[0][0].tenant if planned else ""
    parents = {}
    for work_request_id, where in outside.items():
        parent = tx.get_work_request(work_request_id, lock=True)
        if parent is None or parent.tenant != tenant:
            raise invalid(where, f"no work request {work_request_id!r}", "DEPENDENCY_NOT_FOUND")
        parents[work_request_id] = parent
    stored = []
    for new, plan_of in planned:
        waiting = 0
        for dependency in plan_of.after:
            parent = parents.get(dependency.on)
            met = None if parent is None else dependency.met_by(parent)
            if met is False and parent is not None:
                raise _already_failed(plan_of.named_at[dependency.on], parent)
            waiting += met is None
        state = State.BLOCKED if waiting else State.PENDING
        work_request = new.with_changes(state=state, waiting=waiting)
        if state is State.PENDING and plan_of.after:
            work_request = _resolved(tx, work_request, now, stored=False)
        stored.append(work_request)
    tx.insert_work_requests(stored)
    tx.insert_dependencies(
        [(w.id, d) for w, (_, p) in zip(stored, planned, strict=True) for d in p.after]
    )
    for work_request in stored:
        tx.announce("request", work_request.id)
    return stored


def _already_failed(where: str, parent: WorkRequest) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"{where}: work request {parent.id} {_ended(parent)}; nothing waiting for its "
        "success would run (retry it first, or wait for it to be done instead)",
        reason="DEPENDENCY_FAILED",
        metadata={"id": parent.id},
    )


@dataclass
class _Walk:
    """Requests changed by one walk downstream: the first and latest of each."""

    tx: StoreTransaction
    now: datetime
    before: dict[str, WorkRequest] = field(default_factory=dict)
    after: dict[str, WorkRequest] = field(default_factory=dict)

    def current(self, work_request: WorkRequest) -> WorkRequest:
        return self.after.get(work_request.id, work_request)

    def change(self, old: WorkRequest, new: WorkRequest) -> None:
        self.before.setdefault(old.id, old)
        self.after[new.id] = new

    def write(self) -> list[tuple[WorkRequest, WorkRequest]]:
        """Store each changed request once; the changes, in order."""
        changes = [(self.before[i], new) for i, new in self.after.items()]
        self.tx.replace_work_requests(changes)
        for _, new in changes:
            self.tx.announce("request", new.id)
        return changes


def release(
    tx: StoreTransaction, ended: WorkRequest, now: datetime
) -> list[tuple[WorkRequest, WorkRequest]]:
    """What waits for `ended`, which has just ended, moved on: each
    request that waits for it counts one dependency met, and is PENDING at
    none left; one that needed its success and did not have it is aborted,
    and everything downstream with it. The changes, each once."""
    walk = _Walk(tx, now)
    frontier = {ended.id: ended}
    while frontier:
        ending: dict[str, WorkRequest] = {}
        for dependency, stored in tx.dependents_of(frontier, lock=True):
            child = walk.current(stored)
            if child.state is not State.BLOCKED:
                continue
            parent = frontier[dependency.on]
            if dependency.met_by(parent):
                child = _count_down(walk, child)
            else:
                child = _abort(walk, child, parent)
            if child.state in FINAL_STATES:
                ending[child.id] = child
        frontier = ending
    return walk.write()


def _count_down(walk: _Walk, child: WorkRequest) -> WorkRequest:
    waiting = max(child.waiting - 1, 0)
    if waiting:
        new = child.with_changes(waiting=waiting, updated_at=walk.now)
    else:
        new = _resolved(walk.tx, child.moved_to(State.PENDING, walk.now, waiting=0), walk.now)
    walk.change(child, new)
    return new


def _abort(walk: _Walk, child: WorkRequest, parent: WorkRequest) -> WorkRequest:
    message = f"it needs the success of {parent.id} ({parent.task_name}), which {_ended(parent)}"
    new = child.moved_to(
        State.ABORTED,
        walk.now,
        error=WorkError(DEPENDENCY_FAILED, message),
        completed_at=walk.now,
        waiting=0,
    )
    walk.change(child, new)
    return new


def _ended(parent: WorkRequest) -> str:
    if parent.state is State.ABORTED:
        return "was aborted"
    return "failed" if parent.result is Result.FAILURE else "ended in error"


def reblock(
    tx: StoreTransaction, retried: WorkRequest, now: datetime
) -> list[tuple[WorkRequest, WorkRequest]]:
    """What was aborted because `retried` failed waits again (BLOCKED),
    unless it also needs the success of another that failed; what waits for
    it to be done waits for its new end."""
    aborted = _aborted_downstream(tx, retried)
    again = _still_possible(tx, aborted, retried)
    walk = _Walk(tx, now)
    live = {retried.id, *again}
    parents_of = tx.dependencies_of(again)
    outside = {d.on for deps in parents_of.values() for d in deps} - live
    parents = {p.id: p for p in tx.get_work_requests(outside)}

    def unmet(dependency: Dependency) -> bool:
        parent = parents.get(dependency.on)
        return dependency.on in live or (parent is not None and dependency.met_by(parent) is None)

    for work_request in aborted.values():
        if work_request.id not in again:
            continue
        waiting = sum(1 for d in parents_of.get(work_request.id, []) if unmet(d))
        walk.change(
            work_request,
            work_request.moved_to(
                State.BLOCKED,
                now,
                waiting=waiting,
                error=None,
                result=Result.NONE,
                completed_at=None,
            ),
        )
    for dependency, stored in tx.dependents_of(live, lock=True):
        child = walk.current(stored)
        if (
            child.state is State.BLOCKED
            and dependency.needs is Needs.DONE
            and child.id not in again
        ):
            walk.change(child, child.with_changes(waiting=child.waiting + 1, updated_at=now))
    return walk.write()


def _aborted_downstream(tx: StoreTransaction, root: WorkRequest) -> dict[str, WorkRequest]:
    """Every request aborted because `root` (or one aborted because of it)
    failed, in the order found (parents first)."""
    found: dict[str, WorkRequest] = {}
    frontier = [root.id]
    while frontier:
        nxt = []
        for _, child in tx.dependents_of(frontier, lock=True):
            if child.id in found or not _aborted_by_dependency(child):
                continue
            found[child.id] = child
            nxt.append(child.id)
        frontier = nxt
    return found


def _still_possible(
    tx: StoreTransaction, aborted: dict[str, WorkRequest], retried: WorkRequest
) -> set[str]:
    """Those of `aborted` that need no success of a request that failed
    and stays failed: the rest stay aborted, and what is below them."""
    possible = set(aborted)
    parents_of = tx.dependencies_of(possible)
    outside = {d.on for deps in parents_of.values() for d in deps} - possible - {retried.id}
    failed = {p.id for p in tx.get_work_requests(outside) if Dependency(p.id).met_by(p) is False}
    changed = True
    while changed:
        changed = False
        for work_request_id in list(possible):
            needs = parents_of.get(work_request_id, [])
            if any(
                d.needs is Needs.SUCCESS
                and (d.on in failed or (d.on in aborted and d.on not in possible))
                for d in needs
            ):
                possible.discard(work_request_id)
                changed = True
    return possible


def _aborted_by_dependency(work_request: WorkRequest) -> bool:
    error = work_request.error
    return (
        work_request.state is State.ABORTED
        and error is not None
        and error.reason == DEPENDENCY_FAILED
    )


def unmet(tx: StoreTransaction, work_request: WorkRequest) -> list[tuple[Dependency, WorkRequest]]:
    """What `work_request` waits for that is not met, with how each stands."""
    needs = tx.dependencies_of([work_request.id]).get(work_request.id, [])
    parents = {p.id: p for p in tx.get_work_requests([d.on for d in needs])}
    return [(d, parents[d.on]) for d in needs if d.on in parents and not d.met_by(parents[d.on])]


def _resolved(
    tx: StoreTransaction, work_request: WorkRequest, now: datetime, stored: bool = True
) -> WorkRequest:
    """`work_request`, unblocking, with its inputs from requests resolved to
    their artifacts (recorded in its stored task data, if `stored`); in
    error if they cannot be."""
    data = _data(work_request.task_data_json)
    wanted = _input_requests(data)
    if not wanted:
        return work_request
    total = sum(1 for entry in data.get("inputs", []) if "artifact" in entry)
    for entry in wanted:
        found = tx.list_artifacts(
            work_request_id=entry["request"],
            category=entry.get("category", ""),
            limit=MAX_INPUTS + 1,
        )
        entry["artifacts"] = [a.id for a in reversed(found) if a.category != DEBUG_LOGS_CATEGORY]
        total += len(entry["artifacts"])
    if total > MAX_INPUTS:
        why = f"its inputs come to more than {MAX_INPUTS} artifacts"
        return work_request.moved_to(
            State.COMPLETED,
            now,
            result=Result.ERROR,
            error=WorkError(INPUTS_UNAVAILABLE, why),
            completed_at=now,
        )
    text = json.dumps(data)
    if stored:
        tx.replace_task_data(work_request.id, text)
    return work_request.with_changes(task_data_json=text)


def _data(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def _input_requests(data: Any) -> list[dict[str, Any]]:
    inputs = data.get("inputs", []) if isinstance(data, dict) else []
    return (
        [e for e in inputs if isinstance(e, dict) and "request" in e]
        if isinstance(inputs, list)
        else []
    )


@dataclass(frozen=True)
class Pipeline:
    """Requests linked by dependencies, either way, oldest first."""

    nodes: list[WorkRequest]
    #: What each waits for.
    waits: dict[str, list[Dependency]]
    #: Whether it has more requests than `nodes`.
    truncated: bool

    @property
    def done(self) -> bool:
        """Whether every request has ended."""
        return all(w.state in FINAL_STATES for w in self.nodes)

    @property
    def failed(self) -> int:
        """How many failed, errored or were aborted."""
        return sum(
            w.state is State.ABORTED or w.result in (Result.FAILURE, Result.ERROR)
            for w in self.nodes
        )


def component(tx: StoreTransaction, work_request_id: str, limit: int) -> Pipeline:
    """The pipeline of a request: every request linked to it by
    dependencies, either way, at most `limit`."""
    seen: set[str] = {work_request_id}
    frontier = [work_request_id]
    waits: dict[str, list[Dependency]] = {}
    truncated = False
    while frontier and not truncated:
        upstream = tx.dependencies_of(frontier)
        waits.update(upstream)
        linked: Iterable[str] = [d.on for deps in upstream.values() for d in deps]
        linked = [*linked, *(child for child, _ in tx.waiting_on(frontier))]
        frontier = []
        for other in linked:
            if other in seen:
                continue
            if len(seen) >= limit:
                truncated = True
                break
            seen.add(other)
            frontier.append(other)
    found = sorted(tx.get_work_requests(seen), key=lambda w: w.id)
    return Pipeline(found, waits, truncated)


#: Requests changed downstream: (before, after) each.
Changes = list[tuple[WorkRequest, WorkRequest]]


def follow(tx: StoreTransaction, before: WorkRequest, after: WorkRequest, now: datetime) -> Changes:
    """What a change of `before` to `after` moves downstream, in its transaction."""
    if after.state in FINAL_STATES and before.state not in FINAL_STATES:
        return release(tx, after, now)
    if before.state in FINAL_STATES and after.state not in FINAL_STATES:
        return reblock(tx, after, now)
    return []
