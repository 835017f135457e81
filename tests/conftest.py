"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from taskyard.tasks import Task

# The machines are shared and noisy: no test may fail on a time.
settings.register_profile("taskyard", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("taskyard")


@pytest.fixture
def isolated_registry() -> Iterator[dict[str, type[Task]]]:
    """Let a test define Task subclasses; forget them afterwards."""
    saved = dict(Task._sub_tasks)
    try:
        yield Task._sub_tasks
    finally:
        Task._sub_tasks.clear()
        Task._sub_tasks.update(saved)
