"""Change feed: every committed change of a work request, for watchers, and
a word when a worker's state changes (for the status page)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from taskyard.scheduler.domain import WorkRequest

Predicate = Callable[[WorkRequest], bool]
#: Told of each change as it is published: a work request, or None when a
#: worker connected, went away or was changed. Must not block or fail.
Listener = Callable[[WorkRequest | None], None]


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
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every change from now on; return what stops it
        (again and again: once stopped, it stays stopped)."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

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
        for listener in self._listeners:
            listener(work_request)

    def worker_changed(self) -> None:
        """Tell listeners that a worker connected, went away or was changed."""
        for listener in self._listeners:
            listener(None)

    def close(self) -> None:
        """End every subscription (shutdown)."""
        for _, subscription in self._subscribers.values():
            subscription.queue.put_nowait(None)
