"""Entry point of the `taskyard` command.

`taskyard --version` is answered before anything else is imported; every
other command line goes to `taskyard.cli.app`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        from taskyard.cli.version import taskyard_version  # noqa: PLC0415

        print(f"taskyard {taskyard_version()}")
        return 0
    from taskyard.cli.app import run  # noqa: PLC0415

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
