"""A PostgreSQL server that goes away under a running daemon, and comes back: the daemon
logs one line per step it skips, naming the step and the reason (no traceback: an outage is
not a bug), says once that the database answers again, takes its lock again (the restart
closed the connection that held it), and goes on. Stopped during the outage, it says what
it could not do and exits 0.

The server is one of this module's own (the suite's is shared by every test): stopped as a
crash or a failover stops it (`pg_ctl -m immediate`) and started again on the same port.
Real subprocesses on the real clock; every wait polls the daemon's log with a deadline.
"""

# The daemon tests' fixtures are imported by name; pytest passes them to the tests as arguments.
# ruff: noqa: F811

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from automator.daemon import HEARTBEAT_SECONDS
from automator.engine import TickReport
from automator.pipeline import Writes
from tests.conftest import cart, statuses, utc
from tests.postgres import PostgresServer, running_server
from tests.test_daemon import (  # noqa: F401  (fixtures)
    STARTUP,
    daemon_env,
    project_dir,
    start_daemon,
)

OUTAGE = 20.0  # seconds to see the skipped steps, or the daemon back at work


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    if getattr(request, "param", "postgresql") == "sqlite":
        pytest.skip("a database server's outage (SQLite's locked file: tests/test_database_locked.py)")
    return str(request.getfixturevalue("own_server").new_database())


def test_a_daemon_logs_one_line_per_step_skipped_while_postgresql_is_down(start_daemon, own_server) -> None:
    daemon = start_daemon("--tick-interval", "2")
    daemon.wait_until(lambda: daemon.logged("tick"), STARTUP, "the first tick")

    def said(start: str) -> list[dict]:
        return [line for line in daemon.lines() if line["message"].startswith(start)]

    def ticks() -> int:
        return len([line for line in daemon.lines() if line["message"] == "tick"])

    before = ticks()
    daemon.wait_until(lambda: ticks() > before, STARTUP, "a tick")  # the next is 2 s away
    own_server.stop()
    daemon.wait_until(
        lambda: len(said("dispatch skipped: ")) >= 5 and said("tick skipped: "), OUTAGE, "skipped steps"
    )
    own_server.resume()
    daemon.wait_until(lambda: daemon.logged("the database answers again"), OUTAGE, "the database back")
    before = ticks()
    daemon.wait_until(lambda: ticks() > before, STARTUP, "a tick after the outage")
    relocked = "took the daemon's lock again: the database had closed its connection"
    daemon.wait_until(lambda: daemon.logged(relocked), HEARTBEAT_SECONDS + OUTAGE, "its lock again")

    assert daemon.stop()[0] == 0
    lines = daemon.lines()
    assert [line for line in lines if "error" in line] == []  # no traceback
    problems = [
        line for line in lines if line["level"] not in ("info", "debug") and line["message"] != relocked
    ]
    steps = {line["message"].split(":")[0] for line in problems}
    assert (
        {"dispatch skipped", "tick skipped"}
        <= steps
        <= {"dispatch skipped", "tick skipped", "heartbeat skipped"}
    )
    assert all(line["level"] == "warning" for line in problems)
    assert all("connection" in line["message"].lower() for line in problems)  # the driver's reason
    [back] = said("the database answers again")
    assert back["level"] == "info" and back["skipped"] == len(problems)


def test_a_daemon_stopped_while_postgresql_is_down_exits_0_and_says_what_it_could_not_do(
    start_daemon, own_server
) -> None:
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("tick"), STARTUP, "the first tick")
    own_server.stop()
    try:
        daemon.wait_until(
            lambda: any(line["message"].startswith("dispatch skipped: ") for line in daemon.lines()),
            OUTAGE,
            "a skipped dispatch",
        )
        code, _ = daemon.stop()
    finally:
        own_server.resume()

    lines = daemon.lines()
    assert code == 0, daemon.tail()
    assert [line for line in lines if "error" in line] == []  # no traceback
    assert [line["message"].split(":")[0] for line in lines if line["message"].startswith("could not")] == [
        "could not record the stop"
    ]
    assert lines[-1]["message"] == "daemon stopped"


def test_a_tick_whose_connection_is_cut_mid_write_says_so_in_one_line_and_the_next_queues_it(
    engine, store, make_contact, make_event, caplog, monkeypatch
) -> None:
    """The server closes the connection a tick writes on (pg_terminate_backend, a restart):
    what that transaction held is undone and the rule keeps its mark, so the next tick
    queues it; the log says so in one line, with the server's reason, not a traceback."""
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 03:00"), email="lan@example.com", id="cart-1", **cart())
    begin = Writes._begin
    cut: list[int] = []

    def begin_then_cut(self: Writes) -> Any:
        session = begin(self)
        if not cut:  # the first write transaction only
            cut.append(session.execute(select(func.pg_backend_pid())).scalar_one())
            with store.engine.connect() as admin:
                admin.execute(select(func.pg_terminate_backend(cut[0])))
        return session

    monkeypatch.setattr(Writes, "_begin", begin_then_cut)
    now = utc("2026-11-20 04:00")
    first = TickReport(now)
    with caplog.at_level("INFO", logger="automator"):
        engine.evaluate(now, first)
    engine.evaluate(now, second := TickReport(now))

    undone = [r.error for r in first.rules.values() if r.error]
    assert cut and len(undone) == 1 and "not committed" in undone[0]  # the rule written first
    assert [r.exc_info for r in caplog.records if r.levelno >= logging.WARNING] == [None]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith("the tick's messages could not be committed: ")
    assert warning.endswith(": terminating connection due to administrator command")  # the server's words
    assert [r.error for r in second.rules.values() if r.error] == []
    assert statuses(store) == {"queued": 1}
