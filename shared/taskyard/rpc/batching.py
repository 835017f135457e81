"""Several small messages in one stream element, within the message size limit.

A session that carries one stream element per assignment or report pays
gRPC's per-message cost for each; both sides instead send everything they
have ready at once, split only where the size limit demands it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from taskyard.rpc.credentials import MAX_MESSAGE


class Sized(Protocol):
    def ByteSize(self) -> int: ...


M = TypeVar("M", bound=Sized)

#: Room left for the enclosing message's framing.
BUDGET = MAX_MESSAGE // 2


def batches(items: Iterable[M], budget: int = BUDGET) -> Iterator[list[M]]:
    """Consecutive runs of `items` whose encoded sizes add up to at most
    `budget`; an item larger than that goes alone."""
    batch: list[M] = []
    used = 0
    for item in items:
        size = item.ByteSize()
        if batch and used + size > budget:
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        yield batch
