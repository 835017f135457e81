"""Configuration precedence shared by every command: flag > TASKYARD_* env > TOML > default.

A command declares its settings as a dataclass whose fields have defaults;
`resolve()` fills each field from the first source that has it, converting
strings from the environment to the field's type.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from taskyard.errors import InvalidArgumentError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def load_toml(path: Path | None, section: str) -> dict[str, Any]:
    """The `[section]` table of a TOML file (keys with `-` or `_`), or {}."""
    if path is None:
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidArgumentError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgumentError(f"config file {path} is not valid TOML: {error}") from error
    table = document.get(section, {})
    if not isinstance(table, dict):
        raise InvalidArgumentError(f"[{section}] in {path} must be a table")
    return {key.replace("-", "_"): value for key, value in table.items()}


def _convert(name: str, text: str, default: Any) -> Any:
    kind = type(default)
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise InvalidArgumentError(f"TASKYARD_{name.upper()} must be true or false")
        return lowered in _TRUE
    if isinstance(default, list):
        return [item.strip() for item in text.split(",") if item.strip()]
    if default is None or kind is str or isinstance(default, Path):
        return Path(text) if isinstance(default, Path) else text
    try:
        return kind(text)
    except ValueError as error:
        raise InvalidArgumentError(
            f"TASKYARD_{name.upper()}={text!r} is not a {kind.__name__}"
        ) from error


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def resolve(
    settings: type[T],
    flags: Mapping[str, Any],
    toml: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> T:
    """Build `settings` from flags (None means unset), environment, TOML and defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    fields = dataclasses.fields(cast(Any, settings))
    unknown = set(toml) - {f.name for f in fields}
    if unknown:
        raise InvalidArgumentError(f"unknown config keys: {', '.join(sorted(unknown))}")
    for field in fields:
        default = _default(field)
        env_key = f"TASKYARD_{field.name.upper()}"
        if flags.get(field.name) is not None:
            values[field.name] = flags[field.name]
        elif env_key in environ:
            values[field.name] = _convert(field.name, environ[env_key], default)
        elif field.name in toml:
            values[field.name] = toml[field.name]
        else:
            values[field.name] = default
        if isinstance(default, Path) and isinstance(values[field.name], str):
            values[field.name] = Path(values[field.name]).expanduser()
    return settings(**values)
