"""Change feed: every committed change of a work request, for watchers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from taskyard.scheduler.domain import WorkRequest

Predicate = Callable[[WorkRequest], bool]


class Subscription:
    """Changes a subscriber wants, in commit order; iterate, then close."""

    def __init__(self, feed: ChangeFeed, key: int) -> None:
        self._feed = feed
        self._key = key
        self.queue: asyncio.Queue[WorkRequest | None] = asyncio.Queue()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> WorkRequest:
        change = await self.queue.get()
        if change is None:
            raise StopAsyncIteration
        return change

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._feed.unsubscribe(self._key)


class ChangeFeed:
    """Fans committed work-request changes out to subscribers."""

    def __init__(self) -> None:
        self._subscribers: dict[int, tuple[Predicate, Subscription]] = {}
        self._next_key = 0

    def subscribe(self, wanted: Predicate) -> Subscription:
        """Start receiving changes that pass `wanted`, from now on."""
        key, self._next_key = self._next_key, self._next_key + 1
        subscription = Subscription(self, key)
        self._subscribers[key] = (wanted, subscription)
        return subscription

    def unsubscribe(self, key: int) -> None:
        """Stop a subscription."""
        self._subscribers.pop(key, None)

    def publish(self, work_request: WorkRequest) -> None:
        """Hand a committed change to every subscriber that wants it."""
        for wanted, subscription in self._subscribers.values():
            if wanted(work_request):
                subscription.queue.put_nowait(work_request)

    def close(self) -> None:
        """End every subscription (shutdown)."""
        for _, subscription in self._subscribers.values():
            subscription.queue.put_nowait(None)
