"""The SQLite store copies its write-ahead log into the database file in the background, so
that a tick's commits never wait for the disk, and stops doing so when it is closed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from automator.schema import Suppression
from automator.store import Store, table
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
