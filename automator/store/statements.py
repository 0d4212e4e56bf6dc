"""What the store's query modules build their statements from: a model's table, an INSERT
that can skip or update a conflicting row on both SQLite and PostgreSQL, and a column that
SQLite compares row by row instead of looking it up through an index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, SQLModel


class per_row(FunctionElement[Any]):  # noqa: N801 (named as SQL functions are)
    """A column compared in each row a query reaches by another way, never looked up
    through its own index: `+column` on SQLite, where unary plus changes no value, the
    column itself elsewhere. For a condition that SQLite would otherwise take for the
    cheapest way in, wrongly (it has no statistics)."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(per_row)
def _column(element: per_row, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(per_row, "sqlite")
def _unindexed_column(element: per_row, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


def insert(session: Session, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]
