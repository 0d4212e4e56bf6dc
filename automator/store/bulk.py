"""Many rows at once. `execute_many`: an INSERT of many rows of plain values, with the
parameters prepared here in one pass over the rows rather than by SQLAlchemy's general
per-row handling, which costs more than SQLite's insert of the row itself. `loading`: an
import's transactions, with the indexes (and on PostgreSQL the foreign keys) of an empty
table made again at the end.

The compiled statements are kept by SQLAlchemy's own cache key, from a private method
(`_generate_cache_key`): tests/test_store.py checks that the rows stored are the ones
SQLAlchemy's own insert stores, so a SQLAlchemy upgrade that changes it shows there."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from automator.store import locks


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


def insert_columns(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    skip_conflicts_on: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> list[tuple[Any, ...]]:
    """PostgreSQL: insert many rows as one statement over an array per column (`INSERT …
    SELECT FROM unnest(…)`), skipping those whose `skip_conflicts_on` key exists (or came
    earlier in `rows`); returns the `returning` columns of the rows it wrote.

    An executemany runs the INSERT once per row, and each run costs the server more than
    writing the row itself. The arrays go in binary: in text, psycopg would quote every
    element. The rows' keys are the first row's; a column they leave out gets its scalar
    default."""
    if not rows:
        return []
    columns, arrays = _columns(session, table, rows)
    connection = session.connection()
    sql = _unnest_insert(connection.dialect, table, tuple(columns), skip_conflicts_on, returning)
    result = connection.exec_driver_sql(sql, tuple(arrays))  # a tuple: one execution
    return [tuple(row) for row in result] if returning else []


def copy_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: insert many rows through COPY (binary), which costs the server and the
    client less than any INSERT; for rows that cannot conflict (new ids). The rows' keys are
    the first row's; a column they leave out gets its scalar default."""
    if not rows:
        return
    columns, arrays = _columns(session, table, rows)
    connection = session.connection()
    preparer = connection.dialect.identifier_preparer
    names = ", ".join(preparer.quote(table.c[key].name) for key in columns)
    cursor = driver_cursor(session)
    with cursor.copy(f"COPY {preparer.format_table(table)} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([_base_type(table.c[key], connection.dialect) for key in columns])
        for row in zip(*arrays, strict=True):
            copy.write_row(row)


def add_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """New rows that cannot conflict (history lines: their ids are new), at once: one
    statement over an array per column on PostgreSQL (`insert_columns`), where an
    executemany runs the INSERT once per row; one executemany on SQLite, which runs it at
    the cost of the inserts alone. (A COPY would take two round trips to the server, and a
    dispatcher records a few outcomes at a time, on its way to send the next email.)"""
    if session.get_bind().dialect.name == "postgresql":
        insert_columns(session, table, rows)
    else:
        execute_many(session, table.insert(), rows)


def driver_cursor(session: Session) -> Any:
    """A cursor of the database driver itself on the session's connection, inside its
    transaction (psycopg's, on PostgreSQL: binary parameters and COPY)."""
    return session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]


def _columns(session: Session, table: Table, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The columns `rows` set (theirs, then those with a scalar default), and each one's
    values through its type's bind processor, as SQLAlchemy would bind them."""
    dialect = session.get_bind().dialect
    keys = list(rows[0])
    defaults = {
        column.key: column.default.arg  # type: ignore[attr-defined]  # a scalar default has one
        for column in table.columns
        if column.key not in keys and column.default is not None and column.default.is_scalar
    }
    arrays: list[list[Any]] = []
    for key in keys:
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        values = [row[key] for row in rows]
        arrays.append(values if process is None else [process(value) for value in values])
    for key, value in defaults.items():
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        arrays.append([value if process is None else process(value)] * len(rows))
    return [*keys, *defaults], arrays


@functools.lru_cache(maxsize=32)  # a few statements, for every chunk a tick queues
def _unnest_insert(
    dialect: Any, table: Table, keys: tuple[str, ...], conflict: tuple[str, ...], returning: tuple[str, ...]
) -> str:
    quote = dialect.identifier_preparer.quote
    columns = [table.c[key] for key in keys]
    arrays = ", ".join(f"%b::{_base_type(column, dialect)}[]" for column in columns)
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(column.name) for column in columns)}) SELECT * FROM unnest({arrays})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(table.c[key].name) for key in conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(table.c[key].name) for key in returning)}"
    return sql


def _base_type(column: Any, dialect: Any) -> str:
    """The column's type without its length or collation: an array cast to `varchar(n)[]`
    would cut a longer value short, where the INSERT itself refuses it."""
    return re.sub(r"\(.*\)| COLLATE .*", "", column.type.compile(dialect=dialect)).lower()


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


LOAD_CACHE_KIB = 32 * 1024  # a bulk load's page cache on SQLite (a connection's is 16 MB)
BUILDING_INDEXES = "building indexes"  # a load's end, as a progress bar names it
LOAD_LOCK_WAIT = "2s"  # how long a PostgreSQL load waits for its tables before it goes batch by batch


def unannounced(step: str) -> None:
    """Hears of a load's steps for a load that nobody watches."""


@contextmanager
def loading(
    engine: Engine, table: Table, *beside: Table, announce: Callable[[str], None] = unannounced
) -> Iterator[Session | None]:
    """A bulk load into `table` (and the tables `beside` it). Into an empty table: one
    transaction for the whole load (its session is yielded), with the tables' non-unique
    indexes dropped at its start and built again at its end, and on PostgreSQL their foreign
    keys too, checked again at the end in one join. Keeping an index up row by row costs an
    insert at a random place of its B-tree per row, and a foreign key a lookup of the row it
    names: most of a load's time on SQLite once the index outgrows the cache, and two thirds
    of PostgreSQL's for an event. Building an index at the end is one sort. (PostgreSQL's
    manual advises the same for a first load: "Populating a Database".)

    A load that fails leaves the tables as they were. Meanwhile, on SQLite, other
    connections go on reading the table as it was (empty, with its indexes) and wait to
    write; on PostgreSQL, whose index drop locks the tables, they wait to read them too.
    Anything else (a table with rows, a PostgreSQL table in use for LOAD_LOCK_WAIT) yields
    None: each batch then takes a transaction of its own. `announce` hears of the index
    builds before they start (an import's progress bar says so)."""
    tables = (table, *beside)
    session = _empty_for_loading(engine, tables)
    if session is None:
        yield None
        return
    with session:
        if engine.dialect.name == "postgresql":
            restore = _set_aside_on_postgresql(session, tables)
            yield session
            announce(BUILDING_INDEXES)
            cursor = driver_cursor(session)
            # Building an index over the whole load takes as long as the load is big: a
            # statement_timeout set for the server or the user would end it there, and the
            # whole load with it.
            cursor.execute("SET LOCAL statement_timeout = 0")
            for statement in restore:
                cursor.execute(statement)
            session.commit()
            return
        connection = session.connection()
        cache = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        connection.exec_driver_sql(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
        deferred = [index for each in tables for index in each.indexes if not index.unique]
        try:
            for index in deferred:
                index.drop(connection)
            yield session
        finally:
            # Back before the indexes are built: their sort takes as much memory again.
            connection.exec_driver_sql(f"PRAGMA cache_size={cache}")
        announce(BUILDING_INDEXES)
        for index in deferred:
            index.create(connection)
        session.commit()


def _empty_for_loading(engine: Engine, tables: tuple[Table, ...]) -> Session | None:
    """A session whose transaction has the tables to itself, when the first is empty; else
    None. On SQLite it holds the file's write lock. On PostgreSQL, where the session's user
    must own the tables (to drop their indexes: a user that only writes them loads batch by
    batch), the insert fence's shared lock (taken before the tables', as each insert takes
    it: a tick holding the fence waits for no lock of a load's) and the tables' exclusive
    locks, waited for LOAD_LOCK_WAIT at most."""
    table = tables[0]
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return None
    session = Session(engine, expire_on_commit=False)
    try:
        connection = session.connection()
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, until the commit
        elif _is_empty(session, table) and _owned(session, tables):
            session.rollback()  # a look only: a lock kept from it would be upgraded below
            connection = session.connection()
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOAD_LOCK_WAIT}'")
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({locks.SEQUENCE_FENCE})")
            names = ", ".join(connection.dialect.identifier_preparer.format_table(each) for each in tables)
            connection.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
            connection.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
        else:
            session.close()
            return None
        if _is_empty(session, table):
            return session
    except OperationalError as exc:
        session.close()
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        raise
    except BaseException:
        session.close()
        raise
    session.close()
    return None


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's error when lock_timeout passes


def _is_empty(session: Session, table: Table) -> bool:
    return session.execute(select(1).select_from(table).limit(1)).first() is None


def _owned(session: Session, tables: tuple[Table, ...]) -> bool:
    """Whether the session's user owns every one of the tables (or is a superuser)."""
    preparer = session.get_bind().dialect.identifier_preparer
    names = [preparer.format_table(table) for table in tables]
    owned = driver_cursor(session).execute(
        "SELECT bool_and(pg_has_role(current_user, relowner, 'USAGE')) FROM pg_class"
        " WHERE oid = ANY(%(names)s::regclass[])",
        {"names": names},
    )
    return bool(owned.fetchone()[0])


# The tables' indexes that no constraint needs (neither unique nor a primary key), and
# their foreign keys, each with the statement that makes it again.
_DEFERRED_INDEXES = """
SELECT format('DROP INDEX %%I.%%I', n.nspname, i.relname), pg_get_indexdef(i.oid)
FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_namespace AS n ON n.oid = i.relnamespace
WHERE x.indrelid = %(table)s::regclass AND NOT x.indisunique AND NOT x.indisprimary
ORDER BY i.relname
"""
_DEFERRED_KEYS = """
SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', conrelid::regclass, conname),
    format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', conrelid::regclass, conname, pg_get_constraintdef(oid))
FROM pg_constraint WHERE conrelid = %(table)s::regclass AND contype = 'f'
ORDER BY conname
"""


def _set_aside_on_postgresql(session: Session, tables: tuple[Table, ...]) -> list[str]:
    """Drop the tables' non-unique indexes and foreign keys; returns the statements to run at
    the load's end: those that make them again, then an ANALYZE of the tables (the next tick
    plans its lookups by their statistics, and autovacuum would come a minute later)."""
    cursor = driver_cursor(session)
    preparer = session.get_bind().dialect.identifier_preparer
    restore: list[str] = []
    for table in tables:
        name = preparer.format_table(table)
        for query in (_DEFERRED_INDEXES, _DEFERRED_KEYS):
            for drop, create in cursor.execute(query, {"table": name}).fetchall():
                cursor.execute(drop)
                restore.append(create)
    restore.append(f"ANALYZE {', '.join(preparer.format_table(table) for table in tables)}")
    return restore
