"""A matching pass claims what fits the free slots; a lost claim frees its slot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from taskyard.scheduler import lifecycle
from taskyard.scheduler.domain import State, Worker, WorkRequest
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.service.dispatch import Dispatcher
from taskyard.scheduler.service.feed import ChangeFeed
from taskyard.scheduler.service.live import Session
from taskyard.scheduler.service.sessions import Settings
from taskyard.scheduler.store.memory import MemoryStore
from taskyard.tasks import Task

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pending(name: str) -> WorkRequest:
    return WorkRequest(name, "noop", "{}", 0, NOW, name)


async def dispatcher_with(
    requests: list[WorkRequest], slots: int
) -> tuple[Dispatcher, MemoryStore]:
    store = MemoryStore()
    worker = Worker("w1", "sha", NOW, enabled=True, slots=slots,
                    dynamic_metadata=Task.analyze_worker_all_tasks())  # fmt: skip
    with store.transaction() as tx:
        tx.insert_worker(worker)
        for request in requests:
            tx.insert_work_request(request)
    dispatcher = Dispatcher(GroupCommitter(store), ChangeFeed(), lambda: NOW, Settings())
    dispatcher.load([worker], requests)
    dispatcher.workers["w1"].session = Session("w1", lambda _: None, silence=60)
    return dispatcher, store


async def settle(dispatcher: Dispatcher) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.wait_for(dispatcher.db.run(lambda tx: None), 1)
    for _ in range(20):
        await asyncio.sleep(0)


async def test_one_pass_fills_every_free_slot_in_queue_order() -> None:
    dispatcher, store = await dispatcher_with([pending("a"), pending("b"), pending("c")], slots=2)
    assert dispatcher.match_once() == 2
    await settle(dispatcher)
    with store.transaction() as tx:
        assert tx.get_work_request("a").state is State.ASSIGNED  # type: ignore[union-attr]
    assigned = [w for w in dispatcher.active.values() if w.state is State.ASSIGNED]
    assert sorted(w.id for w in assigned) == ["a", "b"]
    assert sorted(dispatcher.pending) == ["c"]
    dispatcher.db.close()


async def test_a_request_changed_meanwhile_is_not_assigned_and_frees_its_slot() -> None:
    dispatcher, store = await dispatcher_with([pending("a"), pending("b")], slots=2)
    with store.transaction() as tx:  # someone else aborted "a"
        tx.replace_work_request(
            lifecycle.abort(pending("a"), NOW, "gone"),
            expected_state=State.PENDING,
            expected_attempt=1,
        )
    assert dispatcher.match_once() == 2
    await settle(dispatcher)
    assert list(dispatcher.active) == ["b"]
    assert dispatcher.workers["w1"].busy == {"b"}
    assert "a" not in dispatcher.pending
    dispatcher.db.close()
