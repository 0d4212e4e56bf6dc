"""The contact store: every SQL statement automator runs lives in this package.

`Store` owns the SQLAlchemy engine; the modules beside it hold named queries per noun
(contacts, events, messages, coupons, suppressions, candidates).
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Engine, Index, Table, event, inspect, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, create_engine

from automator import tables  # noqa: F401  (registers the tables)
from automator.errors import ConfigError

log = logging.getLogger("automator.store")

CHECKPOINT_PAUSE = 0.5  # seconds
WAL_SWITCH_TRIES = 20  # about ten seconds in all (see _use_wal)
SCHEMA_LOCK = 0x6175746F6D61746F  # PostgreSQL advisory lock held while the schema is made ("automato")
EVALUATION_LOCK = SCHEMA_LOCK + 1  # held while a process evaluates the rules
# The log file is reused from its start once it is all copied; this is the size it keeps
# then (a big first tick or import would otherwise leave it at its largest for good).
WAL_KEPT_BYTES = 256 * 1024 * 1024  # about the size at which SQLite checkpoints by itself


class Store:
    """A database holding contacts, events, messages and coupons."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
            in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
            # The connection used last comes back first: its cache is the warmest. A SQLite
            # connection drops its whole page cache when another one wrote since it last read.
            self.engine: Engine = create_engine(parsed, **({} if in_memory else {"pool_use_lifo": True}))
        except Exception as exc:  # SQLAlchemy raises several types for a bad URL
            from automator.display import hide_password

            # The error reaches a terminal and the logs: never with the password. Some
            # SQLAlchemy versions quote the URL in the exception's text too.
            shown = hide_password(url)
            raise ConfigError(f"database_url '{shown}': {str(exc).replace(url, shown)}") from exc
        self._checkpointer: Checkpointer | None = None
        if self.engine.dialect.name == "sqlite" and not in_memory:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "checkin", _temp_store_back)
            self._checkpointer = Checkpointer(self.engine)
            event.listen(self.engine, "commit", self._checkpointer.wake)

    def create_schema(self) -> None:
        """Create what is missing and bring an older database up to date, one process at a
        time: two commands started at once on a new database (the daemon and the console,
        say) would otherwise both create its tables, and all but one fail. A database that
        is up to date is only looked at: no lock is taken (a tick may be holding it)."""
        with self.engine.connect() as connection:
            if not _Upgrade.of(connection):
                return
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, until the commit
            elif self.engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            SQLModel.metadata.create_all(connection)
            _Upgrade.of(connection).apply(connection)  # looked at again: another process may have done it
            connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Held while a process evaluates the rules: processes evaluating one database at once
        (overlapping ticks, a tick beside the daemon) would look up the same occurrences, render
        them and find them queued already, and contend for SQLite's one writer meanwhile. They
        take turns instead. A flock beside a SQLite file (the kernel releases it when the
        process dies), an advisory lock on PostgreSQL; an in-memory database has one process."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": EVALUATION_LOCK})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": EVALUATION_LOCK})
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
        undo is kept in memory, not in a temporary file: a transaction of many savepoints
        (a tick's chunks) wrote each one's copies of the pages it changed, as much again as
        the transaction itself. The connection's temporary storage is put back when it
        returns to the pool (an index built in memory would hold all of it)."""
        session = Session(self.engine, expire_on_commit=False)
        session.begin()
        try:
            if self.engine.dialect.name == "sqlite":
                connection = session.connection()
                connection.info[TEMP_IN_MEMORY] = True
                connection.exec_driver_sql("PRAGMA temp_store=MEMORY")
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        except Exception:
            session.close()
            raise
        return session

    def in_transaction(self, session: Session) -> bool:
        """Whether a session from `writing` is still in its transaction. SQLite rolls a
        transaction back by itself on some errors (a full disk, an I/O error); the
        savepoints after that would be transactions of their own. PostgreSQL never does:
        a failed statement leaves the transaction to its savepoint's rollback. A session
        that cannot even tell is taken as out of it."""
        if self.engine.dialect.name != "sqlite":
            return True
        try:
            return bool(session.connection().connection.driver_connection.in_transaction)  # type: ignore[union-attr]
        except Exception:
            return False

    def dispose(self) -> None:
        """Close the connections and stop the checkpoint thread. A store used again opens
        new connections, as SQLAlchemy's engine does, and starts a new thread."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file from a thread of its own, so
    that a commit never waits for the disk: left to SQLite, the commit that fills the log
    does the copy and its fsync, which made a big tick wait seconds for the disk."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self, _connection: Any = None) -> None:
        """Ask for a checkpoint soon (called on every commit; it never blocks)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._stop = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run, args=(self._stop,), name="automator-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wanted.set()

    def stop(self) -> None:
        """Stop the thread; the next commit starts a new one."""
        with self._lock:
            if self._thread is not None:
                self._stop.set()
                self._wanted.set()
                self._thread.join(timeout=30)
                self._thread = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wanted.wait()
            self._wanted.clear()
            if stop.is_set():
                return
            try:
                with self._engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the next commit asks again; SQLite's own checkpoint is the backstop
                log.warning("WAL checkpoint failed", exc_info=True)
            stop.wait(CHECKPOINT_PAUSE)  # at most one checkpoint per pause, however many commits


# Indexes an earlier automator made that nothing reads any more (each costs every insert).
OBSOLETE_INDEXES = {
    "message": ["ix_message_status_send_at", "ix_message_email", "ix_message_rule_contact_at"],
    "event": ["ix_event_type_at"],  # ix_event_type_at_contact does its work
}


@dataclass
class _Upgrade:
    """What a database made by an earlier automator lacks: `create_all` adds missing tables
    only, not what changed in the tables that exist."""

    tables: list[str]  # missing (create_all makes them, with their indexes)
    columns: list[Column[Any]]  # missing from tables that exist (all nullable or defaulted)
    move_bodies: bool  # the bodies are still kept in the message row
    indexes: list[Index]  # missing from tables that exist
    obsolete: list[str]  # indexes nothing reads any more

    @classmethod
    def of(cls, connection: Connection) -> _Upgrade:
        inspector = inspect(connection)
        existing_tables = set(inspector.get_table_names())
        present = [table_ for table_ in SQLModel.metadata.sorted_tables if table_.name in existing_tables]
        indexes, obsolete, columns = [], [], []
        for table_ in present:
            known = {column["name"] for column in inspector.get_columns(table_.name)}
            columns += [column for column in table_.columns if column.name not in known]
            existing = {index["name"] for index in inspector.get_indexes(table_.name)}
            indexes += [index for index in table_.indexes if index.name not in existing]
            obsolete += [name for name in OBSOLETE_INDEXES.get(table_.name, []) if name in existing]
        message_columns = inspector.get_columns("message") if "message" in existing_tables else []
        return cls(
            [table_.name for table_ in SQLModel.metadata.sorted_tables if table_.name not in existing_tables],
            columns,
            "text_body" in {column["name"] for column in message_columns},
            indexes,
            obsolete,
        )

    def __bool__(self) -> bool:
        return bool(self.tables or self.columns or self.move_bodies or self.indexes or self.obsolete)

    def apply(self, connection: Connection) -> None:
        for column in self.columns:
            log.info("adding column %s.%s", column.table.name, column.name)
            kind = column.type.compile(dialect=connection.dialect)
            default = getattr(column.default, "arg", None) if column.default is not None else None
            # A NOT NULL column needs a value for the rows already there.
            tail = "" if column.nullable else f" NOT NULL DEFAULT {_sql_literal(default)}"
            connection.exec_driver_sql(
                f'ALTER TABLE "{column.table.name}" ADD COLUMN "{column.name}" {kind}{tail}'
            )
        if self.move_bodies:
            log.info("moving message bodies to the message_content table")
            connection.exec_driver_sql(
                "INSERT INTO message_content (message_id, text_body, html_body)"
                " SELECT id, text_body, html_body FROM message"
                " WHERE id NOT IN (SELECT message_id FROM message_content)"
            )
            connection.exec_driver_sql("ALTER TABLE message DROP COLUMN text_body")
            connection.exec_driver_sql("ALTER TABLE message DROP COLUMN html_body")
        for index in self.indexes:
            log.info("creating index %s", index.name)
            index.create(connection)
        for name in self.obsolete:
            connection.exec_driver_sql(f"DROP INDEX {name}")


def _sql_literal(value: Any) -> str:
    """A column default as SQL, for ALTER TABLE (booleans and numbers as numbers)."""
    if isinstance(value, bool | int | float):
        return str(int(value) if isinstance(value, bool) else value)
    if value is None:
        raise ValueError("a NOT NULL column added to a table needs a scalar default")
    return "'" + str(value).replace("'", "''") + "'"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 16 MB per connection. A connection drops its cache whenever another one has written
    # since it last read, which happens all through a tick, so a bigger cache is mostly
    # memory to refill (from the system, page by page) rather than pages found again.
    cursor.execute("PRAGMA cache_size=-16384")
    # The Checkpointer copies the log; SQLite's own checkpoint (which the committing
    # connection runs, waiting for the disk) only when the log passes ~200 MB anyway.
    cursor.execute("PRAGMA wal_autocheckpoint=50000")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
    cursor.close()


TEMP_IN_MEMORY = "automator_temp_in_memory"  # a connection's info: `Store.writing` set temp_store


def _temp_store_back(connection: Any, record: Any) -> None:
    if connection is not None and record.info.pop(TEMP_IN_MEMORY, False):
        connection.execute("PRAGMA temp_store=DEFAULT")


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL (the file keeps it). A new file being switched by another
    process at the same moment answers "database is locked" at once, without the busy
    timeout: this one tries again, a few times, and then finds the file in WAL already."""
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def execute_many(session: Session, statement: Any, rows: list[dict[str, Any]]) -> int:
    """`session.execute(statement, rows)` for many rows of plain values (an INSERT of
    them), with the parameters prepared here in one pass over the rows.

    The same SQL on the same connection; only the per-row parameter handling differs:
    SQLAlchemy's own is general (it handles every kind of statement) and costs more than
    SQLite's insert of the row itself, about 70 µs for a message. Here each row becomes a
    tuple (or a dict, for named parameters) through the columns' own bind processors.

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
        processors = [bind.type.bind_processor(dialect) for bind in binds]
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


def insert(session: Session, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]
