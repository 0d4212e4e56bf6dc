"""The contact store: every SQL statement automator runs lives in this package.

`Store` owns the SQLAlchemy engine, its sessions and transactions, and the locks that let
several processes (the daemon, ticks, the console) share one database. The modules beside
it hold named queries per noun (contacts, events, messages, coupons, suppressions,
candidates), built with `insert` and `table` (`statements`) and, for many rows at once,
`execute_many` (`bulk`). A SQLite file's connections are set up by `sqlite` and its log is
copied by `checkpoint`; a PostgreSQL database's connections are set up by `postgres`. The
schema is made and upgraded by `schema` (Alembic). Writes to contacts are logged by the
database's own triggers (`changes`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, create_engine

from automator import tables  # noqa: F401  (registers the tables)
from automator.errors import ConfigError, DatabaseLocked
from automator.store import locks, postgres, sqlite
from automator.store.bulk import execute_many
from automator.store.checkpoint import Checkpointer
from automator.store.statements import insert, table

__all__ = ["Store", "execute_many", "insert", "outage", "table"]


class Store:
    """A database holding contacts, events, messages and coupons."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
            in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
            # The connection used last comes back first: its cache is the warmest. A SQLite
            # connection drops its whole page cache when another one wrote since it last read.
            # An error's text leaves out the values bound to its statement: they are
            # addresses, names and event properties, and the text reaches the log.
            options = {"hide_parameters": True, **({} if in_memory else {"pool_use_lifo": True})}
            if parsed.get_backend_name() == "postgresql":
                options.update(postgres.engine_options(parsed))
            self.engine: Engine = create_engine(parsed, **options)
        except Exception as exc:  # SQLAlchemy raises several types for a bad URL
            from automator.display import hide_password

            # The error reaches a terminal and the logs: never with the password. Some
            # SQLAlchemy versions quote the URL in the exception's text too.
            shown = hide_password(url)
            raise ConfigError(f"database_url '{shown}': {str(exc).replace(url, shown)}") from exc
        self._url = url
        self._checkpointer: Checkpointer | None = None
        if self.engine.dialect.name == "sqlite" and not in_memory:
            sqlite.require_folder(url)
            sqlite.configure(self.engine)
            self._checkpointer = Checkpointer(self.engine)
            event.listen(self.engine, "commit", self._checkpointer.wake)
        elif self.engine.dialect.name == "postgresql":
            postgres.configure(self.engine)

    def create_schema(self) -> None:
        """Make a new database's schema; refuse one at an older revision (`automator db
        upgrade` brings it up to date). See `automator.store.schema`."""
        from automator.store import schema  # only for commands that open a database

        with self._reaching():
            schema.prepare(self.engine)

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Bring the schema to the newest revision; the revisions before and after."""
        from automator.store import schema

        with self._reaching():
            return schema.upgrade(self.engine)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection of the engine's, a failure to connect said as `_reaching` says it."""
        with self._reaching(), self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """A failure to connect (no server there, no such database, a login refused) as one
        line naming the database, its password hidden, instead of the driver's traceback."""
        try:
            yield
        except DBAPIError as exc:
            if exc.statement is not None:  # a statement failed, on a connection that was made
                raise
            from automator.display import hide_password

            raise ConfigError(
                f"cannot connect to {hide_password(self._url)}: {_reason(self._url, exc)}"
            ) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @property
    def lookup_lanes(self) -> int:
        """How many rules' candidates a tick looks up at once, each on a connection of its
        own. PostgreSQL runs each lookup in a server process of its own, on a core of its own,
        while the tick's own process queues what they found. SQLite runs them in this process,
        beside the queueing: one at a time costs the same, and keeps one reader's page cache
        warm."""
        return postgres.LOOKUP_LANES if self.engine.dialect.name == "postgresql" else 1

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Held while a process evaluates the rules: processes evaluating one database at once
        (overlapping ticks, a tick beside the daemon) would look up the same occurrences, render
        them and find them queued already, and contend for SQLite's one writer meanwhile. They
        take turns instead. A flock beside a SQLite file (the kernel releases it when the
        process dies), an advisory lock on PostgreSQL; an in-memory database has one process."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": locks.EVALUATION})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": locks.EVALUATION})
                    connection.commit()
            return
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            yield
            return
        with open(f"{database}.evaluate.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction begun at once, committed on success: what it reads stays true
        until it commits. On SQLite it holds the write lock from its first statement (a
        read outside it could be stale by the time of the write: two dispatchers would read
        the same due messages); on PostgreSQL, rows it must keep are locked by its queries
        (FOR UPDATE) and its updates compare the status they expect."""
        session = self.writing()
        try:
            yield session
            session.commit()
        finally:
            session.close()

    def writing(self) -> Session:
        """A session whose transaction is begun at once, for writing, so that savepoints
        (`session.begin_nested()`) nest inside it; the caller commits or closes it (closing
        rolls back).

        On SQLite the transaction takes the write lock from the start: Python's driver would
        begin it only at the first INSERT, so a savepoint opened before would be a
        transaction of its own, and releasing it would commit. What a savepoint may have to
        undo is kept in memory (see `sqlite.keep_temp_in_memory`)."""
        session = Session(self.engine, expire_on_commit=False)
        session.begin()
        try:
            if self.engine.dialect.name == "sqlite":
                connection = session.connection()
                sqlite.keep_temp_in_memory(connection)
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        except Exception:
            session.close()
            raise
        return session

    def in_transaction(self, session: Session) -> bool:
        """Whether a session from `writing` is still in its transaction. SQLite rolls a
        transaction back by itself on some errors (a full disk, an I/O error); the
        savepoints after that would be transactions of their own. PostgreSQL does only when
        the connection is lost (a restarted server, a killed backend): otherwise a failed
        statement leaves the transaction to its savepoint's rollback. A session that cannot
        even tell is taken as out of it."""
        try:
            connection = session.connection()
            if self.engine.dialect.name != "sqlite":
                return not connection.invalidated
            return bool(connection.connection.driver_connection.in_transaction)  # type: ignore[union-attr]
        except Exception:
            return False

    def locked(self, exc: BaseException) -> DatabaseLocked | None:
        """`exc` said as DatabaseLocked if it is a SQLite file's write lock waited for in
        vain (another process held it past the busy timeout), else None."""
        if isinstance(exc, DatabaseLocked):
            return exc
        if self.engine.dialect.name != "sqlite" or not sqlite.is_locked(exc):
            return None
        waited = sqlite.busy_seconds(self.engine.url)
        return DatabaseLocked(
            f"the database {self.engine.url.database} is locked by another process "
            f"(waited {waited:g} s); try again"
        )

    def dispose(self) -> None:
        """Close the connections and stop the checkpoint thread. A store used again opens
        new connections, as SQLAlchemy's engine does, and starts a new thread."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


def outage(exc: BaseException) -> str | None:
    """`exc` in one line, if it says that the database cannot be reached or used for now (a
    connection refused or cut, a server shutting down or starting, a file that cannot be
    opened, a lock waited for in vain, no connection free in the pool): the DB-API's
    OperationalError and InterfaceError, raised by the driver or wrapped by SQLAlchemy, or
    what such an error caused. None for anything else: a statement's own error (SQLite's
    "no such column" is an OperationalError too: `sqlite.at_fault`) or a bug, which keeps
    its traceback."""
    seen: BaseException | None = exc
    for _ in range(10):  # a chain of causes is short; bounded all the same
        if seen is None:
            return None
        if _operational(seen):
            # Ours name the database (DatabaseLocked, a failed connection's ConfigError);
            # otherwise the driver's words, without SQLAlchemy's statement and link.
            ours = isinstance(exc, (DatabaseLocked, ConfigError))
            said = exc if ours else getattr(seen, "orig", None) or seen
            return " ".join(line.strip() for line in str(said).splitlines() if line.strip())
        seen = seen.__cause__
    return None


def _operational(exc: BaseException) -> bool:
    if isinstance(exc, (DatabaseLocked, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not any(kind.__name__ in ("OperationalError", "InterfaceError") for kind in type(exc).__mro__):
        return False
    # SQLite raises OperationalError for a statement's own faults too ("no such column").
    return not sqlite.at_fault(getattr(exc, "orig", None) or exc)


def _reason(url: str, exc: DBAPIError) -> str:
    """The driver's words for a failed connection, on one line, without the password."""
    parsed = make_url(url)
    if "@" in (parsed.host or ""):  # the driver would name the password's tail as the host
        return "the URL's password holds an @ that is not written as %40"
    said = " ".join(line.strip() for line in str(exc.orig).splitlines() if line.strip())
    return said.replace(parsed.password, "***") if parsed.password else said
