"""The worker's own token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from taskyard.errors import FailedPreconditionError
from taskyard.worker.identity import load_or_create_token


def test_the_token_is_made_once_and_kept_private(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path / "data")
    path = tmp_path / "data" / "worker.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert load_or_create_token(tmp_path / "data") == token


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_token(tmp_path)
    (tmp_path / "worker.token").chmod(0o644)
    with pytest.raises(FailedPreconditionError, match="chmod 600"):
        load_or_create_token(tmp_path)
