"""Hot statements compiled once per dialect and run with `exec_driver_sql`.

SQLAlchemy's `execute()` looks the statement up in its compile cache, builds
an execution context and processes every bind on each call: on SQLite that
costs five times the statement itself. The statements every work request
runs (insert, claim, each transition) skip that: compiled once here, their
values converted by the column types' own bind processors (public API), and
executed on the same connection and transaction, with SQLAlchemy's error
wrapping (a duplicate still raises `IntegrityError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.engine import CursorResult
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


class Prepared:
    """One statement compiled for one dialect."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = compiled.string
        self._positional = compiled.positiontup is not None
        #: Each parameter's name and converter, in the driver's order.
        self._binds: tuple[tuple[str, Callable[[Any], Any] | None], ...] = tuple(
            (name, compiled.binds[name].type.bind_processor(dialect))
            for name in (compiled.positiontup or compiled.binds)
        )

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for `values` (keyed by bind name)."""
        converted = [
            (name, values[name] if convert is None else convert(values[name]))
            for name, convert in self._binds
        ]
        if self._positional:
            return tuple(value for _, value in converted)
        return dict(converted)

    def execute(self, connection: Connection, values: Mapping[str, Any]) -> CursorResult[Any]:
        """Run the statement with `values` in the connection's transaction."""
        return connection.exec_driver_sql(self.sql, self.parameters(values))

    def execute_many(
        self, connection: Connection, values: Sequence[Mapping[str, Any]]
    ) -> CursorResult[Any]:
        """Run the statement once per item of `values`, in one driver call."""
        return connection.exec_driver_sql(self.sql, [self.parameters(v) for v in values])
