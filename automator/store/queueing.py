"""Set-wise statements that put a chunk of due occurrences on the queue: a handful of
statements per chunk of messages, never several per message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from automator.store import execute_many, insert, table
from automator.store.bulk import add_rows, copy_rows, insert_columns
from automator.tables import Message, MessageContent, MessageHistory

MESSAGES = table(Message)
HISTORY = table(MessageHistory)
CONTENT = table(MessageContent)
DEDUPE_KEY = ("rule_id", "contact_id", "occurrence")


def insert_messages(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[int, str], int]:
    """Insert messages; a row whose dedupe key exists already (another tick
    or daemon queued it first) is skipped. Returns the new ids by (contact, occurrence).

    On PostgreSQL the rows go in as one statement, which returns the ids of the rows it wrote
    (`bulk.insert_columns`). On SQLite they go in as one executemany (with RETURNING,
    SQLAlchemy would build and bind a many-row VALUES statement, which costs more). When it
    wrote every row, their ids are the last ones SQLite gave, in order: a row without an id
    gets the largest id plus one, and the transaction holds the only write lock from the
    first row on. Otherwise the ids are read back through the dedupe key, and a row is ours
    when it carries our Message-ID."""
    if not rows:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        written = insert_columns(session, MESSAGES, rows, DEDUPE_KEY, ("id", "contact_id", "occurrence"))
        return {(contact_id, occurrence): message_id for message_id, contact_id, occurrence in written}
    statement = insert(session, MESSAGES).on_conflict_do_nothing(index_elements=list(DEDUPE_KEY))
    if execute_many(session, statement, rows) == len(rows):
        last = session.execute(select(func.last_insert_rowid())).scalar_one()
        first = last - len(rows) + 1
        return {(row["contact_id"], row["occurrence"]): first + n for n, row in enumerate(rows)}
    ours = {row["message_id"] for row in rows}
    found = session.execute(
        select(MESSAGES.c.id, MESSAGES.c.contact_id, MESSAGES.c.occurrence, MESSAGES.c.message_id).where(
            MESSAGES.c.rule_id == rows[0]["rule_id"],
            MESSAGES.c.contact_id.in_({row["contact_id"] for row in rows}),
        )
    )
    return {(row.contact_id, row.occurrence): row.id for row in found if row.message_id in ours}


def insert_contents(session: Session, contents: list[tuple[int, str | bytes, str | bytes]]) -> None:
    """The bodies of new messages: (message id, text, html) each, packed already or not.
    Through COPY on PostgreSQL: kilobytes each, which it takes at less cost than any
    INSERT."""
    rows = [{"message_id": message, "text_body": text, "html_body": html} for message, text, html in contents]
    if session.get_bind().dialect.name == "postgresql":
        copy_rows(session, CONTENT, rows)
    else:
        execute_many(session, CONTENT.insert(), rows)


def record_history(session: Session, lines: list[tuple[int, str, str]], at: datetime) -> None:
    """One history line per (message id, status, reason)."""
    rows = [
        {"message_id": message_id, "at": at, "status": status, "reason": reason, "actor": "automator"}
        for message_id, status, reason in lines
    ]
    add_rows(session, HISTORY, rows)
