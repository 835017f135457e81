"""The worker's own token: generated once, kept private in the data dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from taskyard.errors import FailedPreconditionError
from taskyard.rpc.credentials import new_token


def load_or_create_token(data_dir: Path) -> str:
    """The worker's token (256 random bits), created on first start with mode 0600.

    Refuses a token file that others can read: the token is the worker's identity.
    """
    path = data_dir / "worker.token"
    data_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise FailedPreconditionError(
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}",
                reason="TOKEN_FILE_UNSAFE",
            )
        return path.read_text(encoding="utf-8").strip()
    token = new_token()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token
