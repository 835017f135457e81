"""How the CLI reports a user's mistake: one line on stderr, non-zero exit.

Exit statuses: 2 invalid input, 1 a refused or failed call, 3 the scheduler
unreachable, 130 interrupted. Under `--json` the line is a JSON object:
`{"error": {"code", "exit_code", "reason", "message", "field_violations"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from taskyard.errors import FieldViolation

INVALID, REFUSED, UNREACHABLE, INTERRUPTED = 2, 1, 3, 130
_CODES = {INVALID: "INVALID_ARGUMENT", REFUSED: "FAILED", UNREACHABLE: "UNAVAILABLE"}


class CliError(Exception):
    """A mistake the user can fix; printed as one line, exit status `exit_code`."""

    def __init__(
        self,
        message: str,
        exit_code: int = INVALID,
        *,
        code: str = "",
        reason: str = "",
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code or _CODES.get(exit_code, "FAILED")
        self.reason = reason or self.code
        self.violations = tuple(violations)

    def as_json(self) -> str:
        """The error as one line of JSON, for `--json`."""
        return json.dumps(
            {
                "error": {
                    "code": self.code,
                    "exit_code": self.exit_code,
                    "reason": self.reason,
                    "message": self.message,
                    "field_violations": [
                        {"field": v.field, "description": v.description} for v in self.violations
                    ],
                }
            }
        )
