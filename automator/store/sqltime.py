"""`shifted(column, delta)`: a timestamp column moved by a fixed duration, in portable SQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from automator.tables import UTCDateTime


class shifted(ColumnElement[Any]):  # noqa: N801  (reads like a SQL function)
    # The delta is part of the SQL text, and so of the key SQLAlchemy caches compiled forms by.
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("seconds", InternalTraversal.dp_plain_obj),
    ]
    inherit_cache = True
    type = UTCDateTime()

    def __init__(self, column: Any, delta: timedelta) -> None:
        self.column = column
        self.seconds = int(delta.total_seconds())


@compiles(shifted, "sqlite")
def _sqlite(element: shifted, compiler: Any, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; strftime keeps the same shape for comparisons.
    column = compiler.process(element.column, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', {column}, '{element.seconds:+d} seconds')"


@compiles(shifted, "postgresql")
def _postgresql(element: shifted, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"({column} + interval '{element.seconds} seconds')"
