"""Parse a JSON object given on the command line, inline or as `@FILE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskyard.cli.errors import CliError


def parse_json_object(text: str, *, option: str) -> dict[str, Any]:
    """Return the JSON object in `text`, or read it from the file named after `@`."""
    source = option
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"{option} file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise CliError(f"cannot read {source}: {error.strerror}") from error
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"{source} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise CliError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value
