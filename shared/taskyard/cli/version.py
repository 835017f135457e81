"""The installed Taskyard's version, looked up only when asked for."""

from __future__ import annotations


def taskyard_version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("taskyard")
    except PackageNotFoundError:
        return "unknown"
