"""Handle a stream's items concurrently, answer them in the order they came.

A client streaming requests must not wait for each answer before the next is
read: items read together are handled together (their commits grouped), while
the answers still come in the order of the items. At most `window` items are
in hand at once; past that, reading stops and gRPC's flow control holds the
client back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Items of one stream in hand at most, by default.
WINDOW = 256


async def in_order(
    items: AsyncIterator[T], handle: Callable[[T], Awaitable[R]], window: int = WINDOW
) -> AsyncIterator[R]:
    """`handle(item)` for each item as soon as it is read, yielding the
    results in the order of the items. An error reading the items is raised
    after the answers to those read before it. Closed early (the stream
    cut), the items in hand are cancelled: `handle` must make whatever it
    committed safe from that (`committer.to_the_end`)."""
    in_hand: asyncio.Queue[asyncio.Future[R] | None] = asyncio.Queue(window)

    async def read() -> None:
        try:
            async for item in items:
                await in_hand.put(asyncio.ensure_future(handle(item)))
        finally:
            await in_hand.put(None)

    reader = asyncio.create_task(read())
    try:
        while (answer := await in_hand.get()) is not None:
            yield await answer
        await reader
    finally:
        reader.cancel()
        while not in_hand.empty():
            left = in_hand.get_nowait()
            if left is not None:
                left.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
