"""Fixtures for tests against a real scheduler server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.scheduler.harness import Harness, start_harness, stop_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    running = await start_harness(tmp_path)
    try:
        yield running
    finally:
        await stop_harness(running)
