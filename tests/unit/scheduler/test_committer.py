"""Group commit: concurrent operations share a transaction; a bad one fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from taskyard.errors import AlreadyExistsError
from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.service.committer import GroupCommitter, to_the_end
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


class CommitFails:
    """A store whose commits fail (a full disk, a lost connection) while
    `failing`: every operation runs, then the transaction is rolled back."""

    shared = False

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.failing = True

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        with self.store.transaction() as transaction:
            yield transaction
            if self.failing:
                raise OSError("disk I/O error")


async def test_a_failed_commit_acknowledges_none_of_its_callers() -> None:
    store = CommitFails()
    committer = GroupCommitter(store)  # type: ignore[arg-type]

    outcomes = await asyncio.gather(*(committer.run(insert(n)) for n in range(20)),
                                    return_exceptions=True)  # fmt: skip
    assert all(isinstance(o, OSError) for o in outcomes)
    store.failing = False
    assert await committer.run(lambda tx: tx.work_requests_in_states({request(0).state})) == []
    await committer.run(insert(1))  # the store is usable once it commits again
    committer.close()


async def test_a_step_runs_to_its_end_when_its_caller_is_cancelled() -> None:
    ran: list[str] = []
    release = asyncio.Event()

    async def step() -> None:
        await release.wait()
        ran.append("queued")

    caller = asyncio.ensure_future(to_the_end(step()))
    await asyncio.sleep(0)  # the step is waiting
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert ran == ["queued"]
