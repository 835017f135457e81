"""The Celery side of bench/peers.py: one no-op task, Redis as broker and
result backend (the URL comes from PEERS_REDIS_URL)."""

from __future__ import annotations

import os

from celery import Celery

redis = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379")
app = Celery("peers", broker=f"{redis}/0", backend=f"{redis}/1")
app.conf.update(worker_prefetch_multiplier=4, task_acks_late=False, result_expires=600)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop() -> bool:
    """Nothing, as Taskyard's `noop`."""
    return True
