"""Group commit: concurrent operations share a transaction; a bad one fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from taskyard.errors import AlreadyExistsError
from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.service.committer import GroupCommitter
from taskyard.scheduler.store.memory import MemoryStore
from taskyard.scheduler.store.port import StoreTransaction

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def request(number: int) -> WorkRequest:
    return WorkRequest(f"wr{number}", "noop", "{}", 0, NOW, f"wr{number}")


def insert(number: int) -> Callable[[StoreTransaction], None]:
    return lambda tx: tx.insert_work_request(request(number))


async def test_operations_arriving_together_share_few_commits() -> None:
    committer = GroupCommitter(MemoryStore())

    await asyncio.gather(*(committer.run(insert(n)) for n in range(100)))
    assert committer.commits <= 3  # the first alone, then the rest in a batch or two
    stored = await committer.run(lambda tx: tx.work_requests_in_states({request(0).state}))
    assert len(stored) == 100
    committer.close()


async def test_a_failing_operation_fails_alone() -> None:
    committer = GroupCommitter(MemoryStore())
    await committer.run(lambda tx: tx.insert_work_request(request(1)))

    outcomes = await asyncio.gather(
        committer.run(insert(2)),
        committer.run(insert(1)),  # a duplicate
        committer.run(insert(3)),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], AlreadyExistsError)
    assert outcomes[2] is None

    def ids(tx: StoreTransaction) -> list[str]:
        return [w.id for w in tx.work_requests_in_states({request(0).state})]

    assert await committer.run(ids) == ["wr1", "wr2", "wr3"]
    committer.close()


async def test_results_come_back_to_each_caller() -> None:
    committer = GroupCommitter(MemoryStore())

    def double(number: int) -> Callable[[StoreTransaction], int]:
        return lambda tx: number * 2

    results = await asyncio.gather(*(committer.run(double(n)) for n in range(10)))
    assert results == [n * 2 for n in range(10)]
    with pytest.raises(ZeroDivisionError):
        await committer.run(lambda tx: 1 / 0)
    committer.close()
