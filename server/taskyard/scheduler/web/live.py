"""Pages that follow the scheduler: one listener on its change feed for all
of them, and at most one update a page per interval.

A page says which changes it shows (`Wants`); the listener only sets a flag
on the pages that want a change, so a busy scheduler pays a function call
per change and open page, and each page renders at most once an interval,
however many changes arrived meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.service.feed import ChangeFeed

#: Whether a page shows a change: a work request, or None (a worker changed).
Wants = Callable[[WorkRequest | None], bool]

#: Seconds between two updates of one page, at the most.
INTERVAL = 1.0


def everything(_change: WorkRequest | None) -> bool:
    """A page that shows every change (the overview)."""
    return True


@dataclass(eq=False)
class _Follower:
    wants: Wants
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


class Updates:
    """Tells each following page when something it shows has changed."""

    def __init__(self, feed: ChangeFeed, interval: float = INTERVAL) -> None:
        self._interval = interval
        self._followers: set[_Follower] = set()
        self._unlisten = feed.listen(self._changed)

    def _changed(self, change: WorkRequest | None) -> None:
        for follower in self._followers:
            if not follower.changed.is_set() and follower.wants(change):
                follower.changed.set()

    async def follow(self, wants: Wants) -> AsyncIterator[None]:
        """Yield once each time something `wants` accepts has changed (and
        at once, for the state the page may have missed while it connected);
        at most once an interval. Ends when the updates close."""
        follower = _Follower(wants)
        follower.changed.set()
        self._followers.add(follower)
        try:
            while True:
                await follower.changed.wait()
                if follower.closed:
                    return
                follower.changed.clear()  # what changes while the page renders comes next
                yield
                await asyncio.sleep(self._interval)
        finally:
            self._followers.discard(follower)

    def close(self) -> None:
        """End every follow (the scheduler is stopping)."""
        self._unlisten()
        for follower in self._followers:
            follower.closed = True
            follower.changed.set()
