"""Typing help for argparse subcommands, and argument types that say what is
wrong in one line (argparse turns their ValueError into its error line)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

# A string: argparse's private class cannot be subscripted at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def int32(text: str) -> int:
    """An integer that fits the wire's int32."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not -(2**31) <= value < 2**31:
        raise argparse.ArgumentTypeError(f"{value} is out of range ({-(2**31)} to {2**31 - 1})")
    return value


def moment(text: str) -> datetime:
    """A time: RFC 3339 (`2026-12-05T10:00:00Z`), or how long ago (`30m`, `2h`, `7d`)."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return datetime.now(UTC) - timedelta(seconds=float(ago[1]) * _UNITS[ago[2]])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use RFC 3339 (2026-12-05T10:00:00Z) or 30m, 2h, 7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def seconds(text: str) -> float:
    """A duration: seconds, or with a unit (`30m`, `2h`, `30d`)."""
    found = _AGO.fullmatch(text.strip())
    if found:
        return float(found[1]) * _UNITS[found[2]]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: 90, 30m, 2h, 30d") from None
