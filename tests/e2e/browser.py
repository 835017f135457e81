"""Debian's chromium, driven by Playwright (its own browser download cannot
work here). Missing, the browser tests skip on a workstation and fail in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = os.environ.get("TASKYARD_CHROMIUM", "/usr/bin/chromium")
#: Flags for a headless run as root on a machine with no network beyond loopback.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip, or in CI fail, when there is no chromium to drive."""
    if Path(CHROMIUM).exists():
        return
    message = f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI") or os.environ.get("TASKYARD_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium (Playwright gives it a fresh profile and removes
    it), closed after."""
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir() -> Path | None:
    """Where to keep screenshots of the pages (for the docs), if asked to."""
    wanted = os.environ.get("TASKYARD_SCREENSHOTS")
    return Path(wanted) if wanted else None
