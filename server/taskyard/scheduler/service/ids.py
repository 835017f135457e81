"""Ids that sort in creation order, so listing newest-first is ordering by id."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

IdFactory = Callable[[], str]


class SortableIds:
    """`<prefix><ms:12 hex><counter:4 hex><random:8 hex>`, strictly increasing.

    The millisecond clock orders ids across restarts; the counter orders ids
    made in the same millisecond (or while the clock steps back).
    """

    def __init__(self, prefix: str, clock_ms: Callable[[], int] | None = None) -> None:
        self._prefix = prefix
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._last_ms = 0
        self._counter = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                self._last_ms, self._counter = now, 0
            else:
                self._counter += 1
                if self._counter > 0xFFFF:
                    self._last_ms, self._counter = self._last_ms + 1, 0
            return f"{self._prefix}{self._last_ms:012x}{self._counter:04x}{secrets.token_hex(4)}"
