"""Whether tasks can be sandboxed here: tests that need it skip without
bubblewrap locally, and fail in CI (TASKYARD_REQUIRE_SANDBOX=1)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

from taskyard.worker.sandbox import host


@functools.cache
def sandbox_missing() -> str:
    """Why a sandbox cannot be made here ("" if it can)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "no bwrap (apt-get install -y bubblewrap)"
    tried = subprocess.run(
        [bwrap, "--unshare-all", *host.system_view(), "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return tried.stderr.strip() or f"bwrap exited {tried.returncode}" if tried.returncode else ""


def require_sandbox() -> pytest.MarkDecorator:
    """Skip (locally) or fail (in CI) when tasks cannot be sandboxed here."""
    missing = sandbox_missing()
    if missing and os.environ.get("TASKYARD_REQUIRE_SANDBOX"):
        raise RuntimeError(f"TASKYARD_REQUIRE_SANDBOX is set, but: {missing}")
    return pytest.mark.skipif(bool(missing), reason=f"cannot sandbox tasks here: {missing}")
