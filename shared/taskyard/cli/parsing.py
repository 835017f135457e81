"""Typing help for argparse subcommands."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# A string: argparse's private class cannot be subscripted at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
