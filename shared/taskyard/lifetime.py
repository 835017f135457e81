"""Child processes that end with the process that started them.

`die_with_parent` runs in a child between fork and exec (`preexec_fn`): the
kernel sends it SIGTERM when its parent dies, however the parent died, SIGKILL
included (Linux's parent-death signal, through libc's `prctl`). Elsewhere it
does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of this process's descendants become its children (not
    init's), so it can see, and stop, what they leave behind (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def die_with_parent_of(parent: int) -> Callable[[], None]:
    """A `preexec_fn` making the child get SIGTERM when `parent` dies."""

    def arrange() -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange
