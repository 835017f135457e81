"""How the CLI reports a user's mistake: one line on stderr, non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """A mistake the user can fix; printed as one line, exit status `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
