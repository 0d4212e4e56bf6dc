"""How a SQLite file's connections are set up: the write-ahead log (readers never block the
writer), a busy timeout, and temporary storage in memory for a writing transaction."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, event, make_url

from automator.errors import ConfigError

# How long a statement waits for another process's write lock before "database is locked";
# the URL's own `?timeout=SECONDS` (the driver's connect argument) overrides it.
BUSY_SECONDS = 10.0
WAL_SWITCH_TRIES = 20  # about ten seconds in all (see _use_wal)
# The log file is reused from its start once it is all copied; this is the size it keeps
# then (a big first tick or import would otherwise leave it at its largest for good).
WAL_KEPT_BYTES = 256 * 1024 * 1024  # about the size at which SQLite checkpoints by itself
TEMP_IN_MEMORY = "automator_temp_in_memory"  # a connection's info: keep_temp_in_memory set temp_store


def require_folder(url: str) -> None:
    """Refuse (ConfigError) a SQLite file whose folder does not exist. SQLite makes the file,
    and nothing here makes its folder: a typo in the path (`/var/lib/automatr/…`) would
    otherwise start a new, empty database that looks like a working one. The default
    automator.db is in the project folder, which exists."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent
    if not folder.is_dir():
        from automator.display import hide_password

        missing = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"database_url '{hide_password(url)}': the database's folder {folder} {missing}; "
            "create it, or correct the path (AUTOMATOR_DATABASE_URL or database_url in automator.toml)"
        )


def configure(engine: Engine) -> None:
    """Set up each connection of a SQLite file's engine as it opens, and put its temporary
    storage back as it returns to the pool."""
    seconds = busy_seconds(engine.url)
    event.listen(engine, "connect", lambda connection, _record: set_up(connection, seconds))
    event.listen(engine, "checkin", _temp_store_back)


def keep_temp_in_memory(connection: Connection) -> None:
    """Keep what the savepoints of the connection's transaction may have to undo in memory,
    not in a temporary file: there, a transaction of many savepoints (a tick's chunks) would
    write each one's copies of the pages it changes, as much again as the transaction itself.
    Put back when the connection returns to the pool (an index built in memory would hold all
    of it)."""
    connection.info[TEMP_IN_MEMORY] = True
    connection.exec_driver_sql("PRAGMA temp_store=MEMORY")


def busy_seconds(url: URL) -> float:
    """How long a connection of the database at `url` waits for another's write lock: the
    URL's `timeout` when it gives one (sqlite:///automator.db?timeout=30), else BUSY_SECONDS."""
    given = url.query.get("timeout")
    return float(given if isinstance(given, str) else BUSY_SECONDS)


# SQLite's primary result codes that say the file cannot be used for now: another's write
# lock (BUSY, LOCKED), no memory, a file it may not write, cannot read or write, a full
# disk, a file it cannot open. SQLITE_ERROR and the others say the statement is at fault
# ("no such column", a syntax error): a bug, or a schema out of step with the code.
UNUSABLE_FOR_NOW = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def at_fault(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's error about the statement itself rather than about the file
    being unusable for now (see UNUSABLE_FOR_NOW). An error without SQLite's code (one made
    by hand) is not taken to be the statement's."""
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return code is not None and code & 0xFF not in UNUSABLE_FOR_NOW


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is SQLite's "database is locked": another
    connection kept the write lock past the busy timeout."""
    while exc is not None:
        if isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def set_up(connection: Any, busy: float = BUSY_SECONDS) -> None:
    """The settings of a new driver connection: the wait for a lock, the log, its
    checkpoints and the cache."""
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
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
