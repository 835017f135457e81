"""Fixtures shared by every test tier."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from taskyard.tasks import Task

# The machines are shared and noisy: no test may fail on a time.
settings.register_profile("taskyard", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("taskyard")


@pytest.fixture(autouse=True)
def _temporary_files_under_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporary files the code under test makes (debug logs kept without server
    access, command directories) land in the test's tmp_path, removed with it."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    monkeypatch.setenv("TMPDIR", str(directory))


@pytest.fixture
def isolated_registry() -> Iterator[dict[str, type[Task]]]:
    """Let a test define Task subclasses; forget them afterwards."""
    saved = dict(Task._sub_tasks)
    try:
        yield Task._sub_tasks
    finally:
        Task._sub_tasks.clear()
        Task._sub_tasks.update(saved)
