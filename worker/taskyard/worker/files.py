"""Removing what tasks leave on the worker's disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any


def remove_tree(path: Path) -> None:
    """Remove `path` and all in it, also what a task made unwritable."""
    if not path.exists():
        return

    def writable_then_again(function: Any, name: str, _error: BaseException) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
            function(name)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=writable_then_again)
    else:
        shutil.rmtree(path, onerror=lambda f, n, e: writable_then_again(f, n, e[1]))
