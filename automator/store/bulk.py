"""`execute_many`: an INSERT of many rows of plain values, with the parameters prepared here
in one pass over the rows rather than by SQLAlchemy's general per-row handling, which costs
more than SQLite's insert of the row itself.

The compiled statements are kept by SQLAlchemy's own cache key, from a private method
(`_generate_cache_key`): tests/test_store.py checks that the rows stored are the ones
SQLAlchemy's own insert stores, so a SQLAlchemy upgrade that changes it shows there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session


def execute_many(session: Session, statement: Any, rows: list[dict[str, Any]]) -> int:
    """`session.execute(statement, rows)` for many rows of plain values (an INSERT of them):
    the same SQL on the same connection, each row made a tuple (or a dict, for named
    parameters) through the columns' own bind processors.

    Returns how many rows the statement wrote (an insert that skips conflicts writes fewer)."""
    if not rows:
        return 0
    connection = session.connection()
    plan = _plan(statement, connection.dialect, tuple(rows[0]))
    if plan is None:
        # A default computed per row: SQLAlchemy's way.
        return session.execute(statement, rows).rowcount  # type: ignore[attr-defined,no-any-return]
    rows = [{**plan.defaults, **row} for row in rows] if plan.defaults else rows
    pairs = plan.pairs
    params: list[Any]
    if plan.names is None:
        params = [tuple([row[key] if p is None else p(row[key]) for key, p in pairs]) for row in rows]
    else:
        named = list(zip(plan.names, pairs, strict=True))
        params = [{name: row[key] if p is None else p(row[key]) for name, (key, p) in named} for row in rows]
    return connection.exec_driver_sql(plan.sql, params).rowcount


@dataclass(frozen=True)
class _Plan:
    """An INSERT compiled for `execute_many`: its SQL and, per parameter, the row key it
    takes and the bind processor it goes through."""

    sql: str
    pairs: list[tuple[str, Any]]
    names: list[str] | None  # the parameters' names, for named parameters; None: positional
    defaults: dict[str, Any]


_PLANS: dict[Any, _Plan | None] = {}
PLANS_KEPT = 256


def _plan(statement: Any, dialect: Any, columns: tuple[str, ...]) -> _Plan | None:
    """The statement compiled for rows with these keys; kept, since queueing runs the same
    few INSERTs for every chunk (compiling one costs more than binding a hundred rows)."""
    cache_key = statement._generate_cache_key()  # SQLAlchemy's own key for its compiled cache
    key = None if cache_key is None or cache_key.bindparams else (cache_key.key, dialect.name, columns)
    if key is not None and key in _PLANS:
        return _PLANS[key]
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    names = list(compiled.positiontup or []) if compiled.positional else list(compiled.binds)
    binds = [compiled.binds[name] for name in names]
    keys = [bind.key for bind in binds]
    # Columns the rows leave out get their default, as SQLAlchemy would give it.
    defaults: dict[str, Any] = {}
    plan: _Plan | None = None
    for missing in set(keys) - set(columns):
        default = statement.table.c[missing].default
        if default is None or not default.is_scalar:
            break
        defaults[missing] = default.arg
    else:
        # Through the type's dialect implementation, as SQLAlchemy binds it: a column whose
        # type differs per dialect (PackedText is text on PostgreSQL) binds as that dialect's.
        processors = [bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds]
        plan = _Plan(
            compiled.string,
            list(zip(keys, processors, strict=True)),
            None if compiled.positional else names,
            defaults,
        )
    if key is not None:
        if len(_PLANS) >= PLANS_KEPT:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan
