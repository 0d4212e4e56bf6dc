"""How a PostgreSQL database's connections are set up (without JIT compilation), and how
its message bodies are compressed (`compress_bodies_with_lz4`).

PostgreSQL compiles a query to machine code when the planner prices it above
`jit_above_cost`. A rule's lookup is priced high (a UNION of windows, each with several
EXISTS) though it reads a few thousand rows through indexes, and its compilation costs
100-400 ms, more than the query itself; it is compiled again at every tick. A tick runs a
dozen such statements. Without JIT, the same statements run in a few milliseconds to a few
tens, and the bulk statements of an import are not slower for it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event


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
        columns = ", ".join(f"ALTER COLUMN {name} SET COMPRESSION lz4" for name in BODIES)
        connection.exec_driver_sql(f"ALTER TABLE message_content {columns}")
