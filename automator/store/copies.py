"""Disposable copies of a store, for `automator simulate`: the copy is ticked forward, the
live store is only read.

SQLite: the backup API, through a read-only connection, into a file in a temporary folder;
a read-only connection cannot write the live file (not even a checkpoint of its log).

PostgreSQL: a new database made with `CREATE DATABASE … TEMPLATE` the live one, which is the
fastest (a file copy) but needs no other session on the live database. When a daemon or
the console is connected, which is when a dry run matters most, the copy is made instead by
creating the schema in a new database and streaming each table with `COPY` from one
REPEATABLE READ snapshot of the live one: consistent, and the live database is only read.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import URL, Connection, MetaData, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from automator.errors import AutomatorError

COPY_PREFIX = "automator_simulation_"


@contextmanager
def disposable_copy(url: str) -> Iterator[str]:
    """The URL of a copy of the database at `url`, dropped when the block ends."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with _sqlite_copy(parsed.database or "") as copy:
            yield copy
    elif parsed.get_backend_name() == "postgresql":
        with _postgres_copy(parsed) as copy:
            yield copy
    else:
        raise AutomatorError(f"simulate cannot copy a {parsed.get_backend_name()} database")


@contextmanager
def _sqlite_copy(path: str) -> Iterator[str]:
    if not path or path == ":memory:" or not Path(path).exists():
        raise AutomatorError(f"no database at {path or 'memory'} to simulate on (import contacts first)")
    with TemporaryDirectory(prefix="automator-simulate-") as folder:
        target = Path(folder) / "copy.db"
        source = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise AutomatorError(f"could not copy the database {path}: {exc}") from exc
        finally:
            source.close()
        yield f"sqlite:///{target}"


@contextmanager
def _postgres_copy(live: URL) -> Iterator[str]:
    name = f"{COPY_PREFIX}{secrets.token_hex(6)}"
    admin = create_engine(live.set(database="postgres"), isolation_level="AUTOCOMMIT", hide_parameters=True)
    copy_url = live.set(database=name)
    try:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{live.database}"'))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55006":  # object in use: others are connected
                raise AutomatorError(f"could not copy the database {live.database}: {exc.orig}") from exc
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            _copy_tables(live, copy_url)
        yield copy_url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _copy_tables(live: URL, copy: URL) -> None:
    """Fill the new database `copy` from one snapshot of `live`: the schema by Alembic, then
    each table's rows (its own triggers off: the rows they would log are copied too), then
    each id sequence set past the copied ids."""
    from automator.store import schema

    source, target = create_engine(live, hide_parameters=True), create_engine(copy, hide_parameters=True)
    try:
        schema.prepare(target)
        tables = MetaData()
        tables.reflect(bind=target)
        with source.connect() as reading, target.begin() as writing:
            reading.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for table in tables.sorted_tables:
                if table.name != "alembic_version":
                    _copy_table(reading, writing, table.name, [column.name for column in table.columns])
    finally:
        source.dispose()
        target.dispose()


def _copy_table(reading: Connection, writing: Connection, name: str, columns: list[str]) -> None:
    listed = ", ".join(f'"{column}"' for column in columns)
    out = reading.connection.driver_connection.cursor()  # type: ignore[union-attr]
    into = writing.connection.driver_connection.cursor()  # type: ignore[union-attr]
    into.execute(f'ALTER TABLE "{name}" DISABLE TRIGGER USER')
    into.execute(f'DELETE FROM "{name}"')  # what earlier tables' triggers logged into it
    with (
        out.copy(f'COPY (SELECT {listed} FROM "{name}") TO STDOUT (FORMAT BINARY)') as rows,
        into.copy(f'COPY "{name}" ({listed}) FROM STDIN (FORMAT BINARY)') as sink,
    ):
        for block in rows:
            sink.write(block)
    into.execute(f'ALTER TABLE "{name}" ENABLE TRIGGER USER')
    if "id" in columns:
        into.execute(
            # setval of no sequence (NULL) is NULL: a table whose id has none is left alone.
            f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), COALESCE(MAX(id), 0) + 1, false) "
            f'FROM "{name}"'
        )
