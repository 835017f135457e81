"""A real scheduler with its status page on 127.0.0.1:0, and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from taskyard.scheduler.web.app import StatusSite
from tests.integration.scheduler.harness import Harness, start_harness, stop_harness


@dataclass
class Site:
    """The scheduler harness, its status page, and where that page is."""

    harness: Harness
    site: StatusSite
    url: str
    http: aiohttp.ClientSession


async def _site(tmp_path: Path, *, loopback: bool) -> AsyncIterator[Site]:
    harness = await start_harness(tmp_path)
    site = StatusSite(
        harness.running.scheduler, loopback=loopback, trace_url="https://t/{trace_id}"
    )
    try:
        port = await site.start("127.0.0.1:0")
        # unsafe: keep cookies of an IP address, as a browser does.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield Site(harness, site, f"http://127.0.0.1:{port}", http)
    finally:
        await site.stop()
        await stop_harness(harness)


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Site]:
    """The page as served on a loopback address: no token needed."""
    async for site in _site(tmp_path, loopback=True):
        yield site


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Site]:
    """The page as served on any other address: a token needed."""
    async for site in _site(tmp_path, loopback=False):
        yield site
