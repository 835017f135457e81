"""How the worker keeps coming back: every failure is retried, none ends it.

Transient trouble (the scheduler down, a session cut, anything unexpected)
is retried with capped exponential backoff and full jitter, a few seconds at
most, so that a short outage costs a reconnect within seconds of the
scheduler's return. Refusals only an operator can fix (the worker disabled,
its token unknown) are retried slowly. Each run of failures starts again from
the shortest wait: `Reconnect.run()` returns when its step succeeded, and the
caller's next run is a fresh one. What goes wrong is said at once, and then
at intervals while it lasts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random,
    wait_random_exponential,
)

from taskyard.errors import TaskyardError, UnauthenticatedError, UnavailableError

log = logging.getLogger("taskyard.worker")

#: Refusal reasons an operator must act on; retried slowly.
NEEDS_OPERATOR = frozenset({"WORKER_DISABLED"})
#: Seconds between repeated lines about the same trouble.
SAY_AGAIN_AFTER = 30.0


def needs_operator(error: BaseException | None) -> bool:
    """Whether retrying soon cannot help: an operator has to act first."""
    return isinstance(error, UnauthenticatedError) or (
        isinstance(error, TaskyardError) and error.reason in NEEDS_OPERATOR
    )


def describe(error: BaseException | None) -> str:
    if isinstance(error, TaskyardError):
        return error.message
    return repr(error)


class Reconnect:
    """Retries a step forever: fast for transient trouble, slowly for refusals."""

    def __init__(self, scheduler: str, max_backoff: float, slow: float = 5.0) -> None:
        self._scheduler = scheduler
        self._fast = wait_random_exponential(multiplier=0.2, max=max_backoff)
        self._slow = wait_random(slow / 2, slow)
        self._said: dict[str, float] = {}

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return float((self._slow if needs_operator(error) else self._fast)(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        what = type(error).__name__ + (error.reason if isinstance(error, TaskyardError) else "")
        now = time.monotonic()
        if now - self._said.get(what, -SAY_AGAIN_AFTER) < SAY_AGAIN_AFTER:
            return
        self._said = {what: now}
        wait = state.next_action.sleep if state.next_action else 0.0
        if needs_operator(error):
            log.warning("the scheduler refuses this worker: %s (asking again in %.0fs)",
                        describe(error), wait)  # fmt: skip
        elif isinstance(error, UnavailableError):
            log.warning("cannot reach the scheduler at %s: %s (retrying)",
                        self._scheduler, describe(error))  # fmt: skip
        else:
            log.error("the session failed: %s (retrying)", describe(error),
                      exc_info=not isinstance(error, TaskyardError))  # fmt: skip

    async def run(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` until it succeeds once."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=self._wait,
            before_sleep=self._before_sleep,
        )
        async for attempt in retrying:
            with attempt:
                await step()
        self._said.clear()
