"""What the store's query modules build their statements from: a model's table, an INSERT
that can skip or update a conflicting row on both SQLite and PostgreSQL, a column that
SQLite compares row by row instead of looking it up through an index, an IN whose
values are bound as one parameter, and a prefix match as a range of an index."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    Boolean,
    ColumnElement,
    Dialect,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine
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


class Listed(TypeDecorator[list[Any]]):
    """A list of values bound as one parameter: a JSON array on SQLite, an array of `item`
    on PostgreSQL."""

    impl = JSON
    cache_ok = True

    def __init__(self, item: TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # Without a length: a cast to varchar(n) would cut a longer value to a prefix.
            item = String() if isinstance(self.item, String) else self.item
            return dialect.type_descriptor(postgresql.ARRAY(item))
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return list(value)


class one_of(FunctionElement[bool]):  # noqa: N801 (named as SQL functions are)
    """`column IN values`, the values bound as one parameter however many they are:
    `column IN (SELECT value FROM json_each(?))` on SQLite, `column = ANY(?)` on PostgreSQL.

    An IN list of N parameters is another SQL text for each N: SQLAlchemy expands and
    renders it at every execution, and the driver prepares each length again (and keeps it,
    at a few hundred kB for thousands of values). This is one text for any number of values.
    `values` is a bound parameter (`listed`), or a collection to bind as an anonymous one."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition in itself: no `= 1` after it on SQLite

    def __init__(self, column: Any, values: BindParameter[Any] | Collection[Any]) -> None:
        if not isinstance(values, BindParameter):
            values = bindparam(None, list(values), type_=Listed(column.type))
        super().__init__(column, values)


def listed(name: str, column: Any) -> BindParameter[Any]:
    """A parameter `name` for `one_of(column, …)`, bound to a collection of its values."""
    return bindparam(name, type_=Listed(column.type))


@compiles(one_of)
def _any_of_array(element: one_of, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = element.clauses.clauses
    return compiler.process(column == any_(values), **kw)


@compiles(one_of, "sqlite")
def _in_json_array(element: one_of, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = element.clauses.clauses
    array = func.json_each(values).table_valued("value")
    return compiler.process(column.in_(select(array.c.value)), **kw)


def prefix_range(value: Any, prefix: str) -> ColumnElement[bool]:
    """`value` starts with `prefix`, as a range (`>= prefix`, `<` the prefix with its last
    letter the next one): an index of the value, in byte order, answers it by a range scan."""
    return and_(value >= prefix, value < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def insert(session: Session, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]
