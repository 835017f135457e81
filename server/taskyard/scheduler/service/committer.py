"""Group commit: store operations that arrive together share one transaction.

Every operation is a function of a StoreTransaction. They queue up while the
store thread commits the previous batch, then run together in one
transaction, so N concurrent submits cost one commit (one fsync), not N. A
batch that fails is re-run one operation per transaction, so one bad
operation fails alone and the others still commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from taskyard.scheduler.store.port import Store, StoreTransaction

T = TypeVar("T")
Operation = Callable[[StoreTransaction], Any]


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None


async def to_the_end(step: Coroutine[Any, Any, T]) -> T:
    """Run `step` (a commit and what follows it in memory: queueing what it
    stored, telling watchers) to its end even if its caller is cancelled
    meanwhile. A client that hangs up, or a stream cut, after a request
    reached the store must not leave it stored yet never queued."""
    task = asyncio.ensure_future(step)
    task.add_done_callback(_retrieved)
    return await asyncio.shield(task)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned step's failure as seen: its caller was told by then,
    or is gone (no 'exception was never retrieved' noise)."""
    if not task.cancelled():
        task.exception()


class GroupCommitter:
    """Runs store operations on one thread, batching those that wait together."""

    def __init__(self, store: Store, max_batch: int = 500) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="taskyard-store")
        self._draining: asyncio.Task[None] | None = None
        self.commits = 0

    @property
    def queued(self) -> int:
        """Operations waiting for the commit in progress to end."""
        return len(self._queue)

    async def run(self, operation: Callable[[StoreTransaction], T]) -> T:
        """Run `operation` in a transaction shared with concurrent ones; return its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((operation, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = (
                    self._queue[: self._max_batch],
                    self._queue[self._max_batch :],
                )
                operations = [operation for operation, _ in batch]
                outcomes = await loop.run_in_executor(self._thread, self._commit, operations)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if outcome.error is not None:
                        future.set_exception(outcome.error)
                    else:
                        future.set_result(outcome.value)
        finally:
            self._draining = None

    def _commit(self, operations: list[Operation]) -> list[_Outcome]:
        self.commits += 1
        try:
            with self._store.transaction() as transaction:
                return [_Outcome(operation(transaction)) for operation in operations]
        except Exception as error:
            if len(operations) == 1:
                return [_Outcome(error=error)]
        return [self._commit_one(operation) for operation in operations]

    def _commit_one(self, operation: Operation) -> _Outcome:
        self.commits += 1
        try:
            with self._store.transaction() as transaction:
                return _Outcome(operation(transaction))
        except Exception as error:
            return _Outcome(error=error)

    def close(self) -> None:
        """Stop the store thread once queued work is done."""
        self._thread.shutdown(wait=True)
