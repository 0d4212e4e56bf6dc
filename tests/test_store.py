"""The SQLite store copies its write-ahead log into the database file in the background, so
that a tick's commits never wait for the disk, and stops doing so when it is closed; its
fast many-row insert stores exactly what SQLAlchemy's own would."""

from __future__ import annotations

import threading
import time
from datetime import timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from automator.schema import Message, Suppression
from automator.store import Store, execute_many, insert, table
from tests.conftest import utc

SUPPRESSIONS = table(Suppression)


def checkpoint_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "automator-checkpoint"]


def test_committed_rows_reach_the_database_file_without_waiting_for_close(tmp_path: Path) -> None:
    path = tmp_path / "automator.db"
    store = Store(f"sqlite:///{path}")
    store.create_schema()
    before = path.stat().st_size
    rows = [
        {
            "email": f"reader{index}@example.com",
            "reason": "manual",
            "note": "x" * 500,
            "created_at": utc("2026-11-20 03:00"),
        }
        for index in range(2000)
    ]
    with store.session() as session:
        session.execute(SUPPRESSIONS.insert(), rows)

    for _ in range(200):  # bounded: the checkpoint thread wakes on the commit
        if path.stat().st_size > before + 500_000:
            break
        time.sleep(0.05)
    grown = path.stat().st_size - before
    store.dispose()

    assert grown > 500_000  # the rows are in the database file, not only in the log


def test_closing_the_store_stops_its_checkpoint_thread(tmp_path: Path) -> None:
    others = set(checkpoint_threads())
    store = Store(f"sqlite:///{tmp_path / 'automator.db'}")
    store.create_schema()
    row = {"email": "a@example.com", "reason": "manual", "created_at": utc("2026-11-20 03:00")}
    with store.session() as session:
        session.execute(SUPPRESSIONS.insert(), [row])
    assert len(set(checkpoint_threads()) - others) == 1

    store.dispose()

    assert set(checkpoint_threads()) - others == set()


def test_execute_many_stores_what_sqlalchemy_stores(tmp_path: Path) -> None:
    messages = table(Message)
    store = Store(f"sqlite:///{tmp_path / 'automator.db'}")
    store.create_schema()
    hanoi = timezone(timedelta(hours=7))

    def row(occurrence: str) -> dict[str, object]:
        # No priority, attempts, skip_policies…: the columns' defaults fill them.
        return {
            "rule_id": "abandoned_cart",
            "contact_id": 1,
            "email": "lan@example.com",
            "occurrence": occurrence,
            "occurred_at": utc("2026-11-20 03:00"),
            "event_id": None,
            "status": "queued",
            "due_at": utc("2026-11-20 04:00").astimezone(hanoi),  # stored as UTC either way
            "send_at": utc("2026-11-20 04:00:00.123456"),
            "expires_at": utc("2026-11-21 04:00"),
            "subject": "Bạn quên giỏ hàng",
            "text_body": "text",
            "html_body": "<p>html</p>",
            "message_id": f"<{occurrence}@shop.example>",
            "created_at": utc("2026-11-20 04:00"),
        }

    with store.session() as session:
        session.execute(messages.insert(), [row("by-sqlalchemy")])
        statement = insert(session, messages).on_conflict_do_nothing(
            index_elements=["rule_id", "contact_id", "occurrence"]
        )
        execute_many(session, statement, [row("fast"), row("fast"), row("fast-2")])  # a repeat is skipped
    with store.engine.connect() as connection:
        raw = [dict(r._mapping) for r in connection.exec_driver_sql("SELECT * FROM message ORDER BY id")]
    with store.session() as session:
        read = session.execute(select(messages).order_by(messages.c.id)).all()
    store.dispose()

    assert [r["occurrence"] for r in raw] == ["by-sqlalchemy", "fast", "fast-2"]
    differ = {"id", "occurrence", "message_id"}
    expected = {key: value for key, value in raw[0].items() if key not in differ}
    assert {key: value for key, value in raw[1].items() if key not in differ} == expected
    assert raw[1]["send_at"] == "2026-11-20 04:00:00.123456" and raw[1]["priority"] == 0
    assert read[1].due_at == utc("2026-11-20 04:00") and read[1].subject == "Bạn quên giỏ hàng"
