"""A SQLite file that another program keeps write-locked (`BEGIN EXCLUSIVE` in a second
connection) past the busy timeout: a command says so in one line and writes nothing, the
daemon warns once per step and goes on when the lock is released. The URL's `?timeout=`
shortens the wait to a fifth of a second."""

# ruff: noqa: F811  (make_key, a fixture imported by name)

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from automator.daemon import Daemon, DaemonOptions
from automator.engine import Engine
from automator.store import Store
from automator.web import create_app
from tests.conftest import all_messages, cart, statuses, utc
from tests.test_api_keys import bearer, make_key  # noqa: F401
from tests.test_daemon import AUTOMATOR, STARTUP

pytestmark = pytest.mark.sqlite_only  # about SQLite's write lock

LOCKED = "is locked by another process (waited 0.2 s); try again"


@pytest.fixture
def database_url(project_dir: Path) -> str:
    return f"sqlite:///{project_dir / 'automator.db'}?timeout=0.2"


@contextmanager
def write_locked(project_dir: Path) -> Iterator[None]:
    """The database's write lock, held by another connection until the block ends."""
    other = sqlite3.connect(project_dir / "automator.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@pytest.fixture
def cart_left(make_contact, make_event) -> None:
    """A cart left at 03:00 (10:00 in Saigon): its reminder is due at 04:00."""
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 03:00"), email="lan@example.com", id="cart-1", **cart())


def test_the_url_timeout_is_how_long_a_connection_waits_for_the_lock(store: Store) -> None:
    with store.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200


def test_a_command_on_a_locked_database_says_so_in_one_line_and_writes_nothing(
    cli, make_contact, make_event, store, project_dir
) -> None:
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")  # left at 21:00 in Saigon: due
    make_event("cart_updated", utc("2026-11-20 14:00"), email="lan@example.com", **cart())  # in quiet hours
    assert cli("tick", "--now", "2026-11-20T15:00:00Z").exit_code == 0
    [message] = all_messages(store)

    with write_locked(project_dir):
        result = cli("queue", "hold", str(message.id), "--reason", "customer asked")

    assert result.exit_code == 1
    assert result.output == f"error: the database {project_dir / 'automator.db'} {LOCKED}\n"
    assert statuses(store) == {"queued": 1}


def test_run_on_a_locked_database_exits_1_with_one_line(store, project_dir, process_env) -> None:
    with write_locked(project_dir):
        result = subprocess.run(
            [*AUTOMATOR, "--project", str(project_dir), "run"],
            env=process_env,
            capture_output=True,
            text=True,
            timeout=STARTUP,
        )

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"error: the database {project_dir / 'automator.db'} {LOCKED}"
    assert "Traceback" not in result.stderr


def test_the_daemon_warns_once_per_step_while_locked_and_goes_on_once_released(
    engine: Engine, store: Store, cart_left, project_dir, caplog
) -> None:
    daemon = Daemon(engine, DaemonOptions(), clock=lambda: utc("2026-11-20 04:00"))
    caplog.set_level(logging.INFO, logger="automator")

    with write_locked(project_dir):
        asyncio.run(daemon.evaluate())
        asyncio.run(daemon.dispatch())
    locked = [(record.levelname, record.getMessage(), record.exc_info) for record in caplog.records]
    caplog.clear()
    asyncio.run(daemon.evaluate())
    asyncio.run(daemon.dispatch())

    where = project_dir / "automator.db"
    assert locked == [
        ("WARNING", f"tick skipped: the database {where} {LOCKED}", None),
        ("WARNING", f"dispatch skipped: the database {where} {LOCKED}", None),
    ]
    assert [record.getMessage() for record in caplog.records] == [
        "tick",
        "the database answers again",  # once, at the first step that goes through
        "dispatched",
    ]
    assert statuses(store) == {"sent": 1}


def test_the_api_on_a_locked_database_answers_503_and_logs_one_line(
    project, store: Store, make_key, project_dir, caplog
) -> None:
    key = make_key("events:write")
    event = {"id": "evt-1", "type": "cart_updated", "email": "lan@example.com", "at": "2026-11-20T03:00:00Z"}

    with TestClient(create_app(project, store)) as client, write_locked(project_dir):
        answer = client.post("/v1/events", json=event, headers=bearer(key))

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    where = project_dir / "automator.db"
    warned = [record for record in caplog.records if record.levelno >= logging.WARNING]
    failed = [(record.getMessage(), record.exc_info) for record in warned]
    assert failed == [(f"API request failed: the database {where} {LOCKED}", None)]
