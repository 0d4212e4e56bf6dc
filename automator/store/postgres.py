"""What is particular to PostgreSQL: how its connections are set up (without JIT
compilation), how its message bodies are compressed and stored (`compress_bodies_with_lz4`,
`keep_bodies_in_line`), and the fence that keeps a rule's mark of new rows from passing a
row not yet committed (`create_fences`, `past_the_fence`).

PostgreSQL compiles a query to machine code when the planner prices it above
`jit_above_cost`. A rule's lookup is priced high (a UNION of windows, each with several
EXISTS) though it reads a few thousand rows through indexes, and its compilation costs
100-400 ms, more than the query itself; it is compiled again at every tick. A tick runs a
dozen such statements. Without JIT, the same statements run in a few milliseconds to a few
tens, and the bulk statements of an import are not slower for it."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import URL, Connection, Engine, event, text
from sqlalchemy.orm import Session

from automator.store import locks

# Rules whose candidates a tick looks up at once (`Store.lookup_lanes`): a tick then holds
# as many connections for its lookups, and one for its writes.
LOOKUP_LANES = 2
CONNECT_TIMEOUT = 10  # seconds; a server that takes a connection and never answers hung commands 2 minutes


def engine_options(url: URL) -> dict[str, Any]:
    """A pooled connection is tested before it is used (one round trip): the server may have
    closed it meanwhile (idle_session_timeout, a restart, a firewall dropping idle
    connections), and a tick would fail on it. A connection attempt gives up after
    CONNECT_TIMEOUT seconds unless the URL says otherwise (`?connect_timeout=`)."""
    timeout = {} if "connect_timeout" in url.query else {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    return {"pool_pre_ping": True, **timeout}


def configure(engine: Engine) -> None:
    """Set up each connection of a PostgreSQL engine as it opens."""
    event.listen(engine, "connect", _settings)


def _settings(connection: Any, _record: Any) -> None:
    """`SET jit = off` for the session, outside any transaction (a SET in the first
    transaction would be undone by its rollback)."""
    autocommit = connection.autocommit
    connection.autocommit = True
    try:
        connection.execute("SET jit = off")
    finally:
        connection.autocommit = autocommit


BODIES = ("text_body", "html_body")


def compress_bodies_with_lz4(connection: Connection) -> None:
    """Message bodies compressed by LZ4 rather than by PostgreSQL's own pglz, when the
    server has it (PostgreSQL 14 and later, built with LZ4; Debian's is): a tick writes
    thousands of bodies of a few kilobytes each, and pglz compresses them at a third of
    LZ4's pace. A body written before keeps its compression until it is written again.
    Nothing to do on SQLite, where automator packs bodies itself (`automator.packing`)."""
    if connection.dialect.name != "postgresql":
        return
    supported = connection.exec_driver_sql(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    ).scalar()
    if supported:
        _alter_bodies(connection, "SET COMPRESSION lz4")


def keep_bodies_in_line(connection: Connection) -> None:
    """Message bodies stay in their row, compressed, unless the row could not fit a page
    (storage MAIN): by default PostgreSQL moves a value out to the table's TOAST table once
    the row passes 2 kB, and a message's bodies compress to just over that. Each message
    then wrote its HTML as two more rows (chunks of 2 kB) with their index entries, and
    each read of its bodies went through the TOAST table's index. Bodies written before
    stay where they are until they are written again."""
    if connection.dialect.name == "postgresql":
        _alter_bodies(connection, "SET STORAGE MAIN")


def _alter_bodies(connection: Connection, change: str) -> None:
    """One ALTER TABLE making `change` to both body columns."""
    columns = ", ".join(f"ALTER COLUMN {name} {change}" for name in BODIES)
    connection.exec_driver_sql(f"ALTER TABLE message_content {columns}")


# The fence. A rule remembers the newest id of its trigger's rows (events, date attributes,
# stage changes, contacts for a schedule) that it has looked at, and its next tick reads
# the rows arrived late by `id > mark`. PostgreSQL gives ids from a sequence when a row is
# inserted, not when it is committed: a transaction that took id 100 and commits after a
# lookup saw id 101 would have its row passed over by every later tick. So each INSERT
# into those tables first takes a shared advisory lock, for the rest of its transaction,
# before its rows take their ids (a statement trigger); and a tick reads the newest ids
# behind the exclusive lock, taken only while no such transaction is open. It is tried a
# few times, never waited for in the lock's queue (where every insert would wait behind
# it): when it cannot be had, the rules keep their marks, and the next tick reads the late
# rows from there again (what was queued meanwhile is left out by the dedupe test). SQLite
# has one writer at a time: its ids follow the commits already.
FENCED = ("event", "contact_date", "stage_change", "contact")
FENCE_TRIES = 20
FENCE_PAUSE = 0.025  # seconds between two tries: half a second in all
_FENCE_FUNCTION = f"""
CREATE FUNCTION automator_sequence_fence() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({locks.SEQUENCE_FENCE});
    RETURN NULL;
END
$$
"""


def create_fences(connection: Connection) -> None:
    """The trigger that makes each INSERT into the fenced tables wait behind the fence."""
    if connection.dialect.name != "postgresql":
        return
    drop_fences(connection)
    connection.exec_driver_sql(_FENCE_FUNCTION)
    for name in FENCED:
        connection.exec_driver_sql(
            f"CREATE TRIGGER {name}_sequence_fence BEFORE INSERT ON {name}"
            " FOR EACH STATEMENT EXECUTE FUNCTION automator_sequence_fence()"
        )


def drop_fences(connection: Connection) -> None:
    """The fence's triggers and function gone (a downgrade past revision 0010)."""
    if connection.dialect.name != "postgresql":
        return
    for name in FENCED:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_sequence_fence ON {name}")
    connection.exec_driver_sql("DROP FUNCTION IF EXISTS automator_sequence_fence()")


def past_the_fence(session: Session) -> bool:
    """Take the fence's exclusive lock for the session's transaction, if no transaction that
    inserted into the fenced tables is open within FENCE_TRIES tries; whether it was taken.
    The statements after it see every such row that will ever be committed below the ids
    they read."""
    for attempt in range(FENCE_TRIES):
        if attempt:
            time.sleep(FENCE_PAUSE)
        taken = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": locks.SEQUENCE_FENCE})
        if taken.scalar():
            return True
    return False
