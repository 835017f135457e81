"""JSON Schema (Draft 2020-12) checks for task data."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, SchemaError, validators

from taskyard.errors import FieldViolation


def compile_schema(schema: Mapping[str, Any]) -> Draft202012Validator:
    """Check `schema` is valid Draft 2020-12 and return a validator for it.

    Raises SchemaError (with jsonschema's explanation) otherwise, including
    when `$schema` names another draft.
    """
    if not isinstance(schema, Mapping):
        raise SchemaError(f"the schema must be a JSON object, not {schema!r}")
    declared = validators.validator_for(schema, default=Draft202012Validator)
    if declared is not Draft202012Validator:
        raise SchemaError(f"$schema must be Draft 2020-12, not {schema.get('$schema')!r}")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def violations(validator: Draft202012Validator, instance: object) -> Iterator[FieldViolation]:
    """Yield every way `instance` breaks the schema, in document order."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        yield FieldViolation(field=error.json_path, description=error.message)
