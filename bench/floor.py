"""The database's own share of a dispatch on SQLite (`bench/dispatch.py --floor`).

Every statement a dispatch ran is recorded as the driver received it (the SQL and its bound
values), then replayed in the same order, with the same commits, on one plain `sqlite3`
connection set up as the store sets up its own, against a copy of the same queued database.
Nothing runs around the statements but the replay's loop: no SQLAlchemy, no re-checks, no
emails, no transport. Its time is what SQLite itself needs to claim and record that queue,
a floor that the dispatcher can approach but not pass, whatever is done on the Python side.

Left out of the replay: the checkpointer's statements (its own thread copies the log into the
file beside a dispatch) and SQLite's automatic checkpoint, so that the log keeps every page
the dispatch wrote. Read from the log, those pages tell which tables and indexes the
dispatch's writes go to.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from automator.store import sqlite

COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"
WAL_HEADER = 32  # bytes before the first frame of a log
FRAME_HEADER = 24  # bytes before each frame's page


@dataclass
class Statement:
    sql: str  # or COMMIT / ROLLBACK: the end of a transaction
    parameters: Any = None
    many: bool = False


@dataclass
class Recording:
    """The statements of the engines it is attached to, in the order they ran."""

    statements: list[Statement] = field(default_factory=list)

    @contextmanager
    def of(self, engine: Engine) -> Iterator[None]:
        listeners = [
            ("before_cursor_execute", self._statement),
            ("commit", lambda _connection: self.statements.append(Statement(COMMIT))),
            ("rollback", lambda _connection: self.statements.append(Statement(ROLLBACK))),
        ]
        for name, listener in listeners:
            event.listen(engine, name, listener)
        try:
            yield
        finally:
            for name, listener in listeners:
                event.remove(engine, name, listener)

    def _statement(
        self, _conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if not sql.lstrip().upper().startswith("PRAGMA WAL_CHECKPOINT"):
            self.statements.append(Statement(sql, parameters, many))


@dataclass
class Replayed:
    statements: int
    commits: int
    seconds: float
    cpu: float
    wal_pages: Counter[str]  # pages the replay wrote to the log, by table or index


def replay(recording: Recording, queued: Path, database: Path) -> Replayed:
    """Replay the recorded statements on a copy of `queued` at `database`."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(queued, database)
    connection = sqlite3.connect(database, check_same_thread=False)
    try:
        sqlite.set_up(connection)
        connection.execute("PRAGMA wal_autocheckpoint=0")
        started, cpu = time.perf_counter(), time.process_time()
        for statement in recording.statements:
            if statement.sql == COMMIT:
                connection.commit()
            elif statement.sql == ROLLBACK:
                connection.rollback()
            elif statement.many:
                connection.executemany(statement.sql, statement.parameters).fetchall()
            else:
                connection.execute(statement.sql, statement.parameters or ()).fetchall()
        connection.commit()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return Replayed(
            statements=sum(s.sql not in (COMMIT, ROLLBACK) for s in recording.statements),
            commits=sum(s.sql == COMMIT for s in recording.statements),
            seconds=seconds,
            cpu=cpu,
            wal_pages=_log_pages(connection, Path(f"{database}-wal")),
        )
    finally:
        connection.close()


def _log_pages(connection: sqlite3.Connection, wal: Path) -> Counter[str]:
    """The pages in the write-ahead log, counted by the table or index that holds them now
    (SQLite's `dbstat`; empty where this SQLite is built without it)."""
    try:
        owner = dict(connection.execute("SELECT pageno, name FROM dbstat").fetchall())
    except sqlite3.OperationalError:
        return Counter()
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    pages: Counter[str] = Counter()
    with wal.open("rb") as log:
        log.seek(WAL_HEADER)
        while header := log.read(FRAME_HEADER):
            if len(header) < FRAME_HEADER:
                break
            (page,) = struct.unpack(">I", header[:4])
            pages[owner.get(page, "(free)")] += 1
            log.seek(page_size, 1)
    return pages


def report(replayed: Replayed, sent: int, automator_rate: float) -> None:
    """Print the floor, automator's share of it, and where the written pages went."""
    rate = sent / replayed.seconds
    print(
        f"database floor: the dispatch's {replayed.statements} statements and {replayed.commits} "
        f"commits replayed on one sqlite3 connection in {replayed.seconds:.2f} s "
        f"(CPU {replayed.cpu:.2f} s): {rate:,.0f} messages/s"
    )
    print(f"  automator's median rate is {automator_rate / rate:.2f} of the floor")
    written = sum(replayed.wal_pages.values())
    if written:
        shares = ", ".join(
            f"{name} {count / written:.0%}" for name, count in replayed.wal_pages.most_common(8)
        )
        print(f"  log: {written} pages, {written / sent:.1f} per message sent; by table or index: {shares}")
