"""What counts as the database being out of reach (`store.outage`: one line in the log, no
traceback) and what is a statement's own fault (its traceback kept). SQLite raises
OperationalError for both: a file it cannot open or a lock held too long is an outage, a
column that does not exist is not. A rule that fails in an outage says so in one line."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from automator import lookup as lookup_module
from automator.engine import TickReport
from automator.store import Store, outage
from tests.conftest import cart, utc


def error_of(store: Store, statement: str) -> Exception:
    try:
        with pytest.raises(Exception) as raised, store.session() as session:
            session.execute(text(statement))
        return raised.value
    finally:
        store.dispose()


def no_such_column(tmp_path: Path) -> Exception:
    return error_of(Store(f"sqlite:///{tmp_path / 'a.db'}"), "SELECT nope FROM sqlite_master")


def syntax_error(tmp_path: Path) -> Exception:
    return error_of(Store(f"sqlite:///{tmp_path / 'a.db'}"), "SELEC 1")


def cannot_open(tmp_path: Path) -> Exception:
    (tmp_path / "a folder").mkdir()
    return error_of(Store(f"sqlite:///{tmp_path / 'a folder'}"), "SELECT 1")


def locked(tmp_path: Path) -> Exception:
    path = tmp_path / "a.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        return error_of(Store(f"sqlite:///{path}?timeout=0.05"), "INSERT INTO t VALUES (1)")
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (no_such_column, None),
        (syntax_error, None),
        (cannot_open, "unable to open database file"),
        (locked, "database is locked"),
    ],
)
def test_sqlite_errors_are_outages_only_when_the_file_cannot_be_used(
    tmp_path: Path, make: Callable[[Path], Exception], said: str | None
) -> None:
    error = make(tmp_path)

    assert type(error).__name__ == "OperationalError"  # both kinds: SQLite's one class for them
    assert outage(error) == said


def test_an_operational_error_without_sqlites_code_stays_an_outage() -> None:
    made = OperationalError("INSERT INTO message", {}, Exception("disk I/O error"))

    assert outage(made) == "disk I/O error"


@pytest.fixture
def a_cart(make_contact, make_event) -> None:  # type: ignore[no-untyped-def]
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 01:00"), "lan@example.com", **cart())


def unreachable(session) -> None:  # type: ignore[no-untyped-def]
    raise OperationalError("SELECT", {}, Exception("connection to server at 127.0.0.1 failed"))


def at_fault(session) -> None:  # type: ignore[no-untyped-def]
    session.execute(text("SELECT nope FROM contact"))  # SQLite: OperationalError; PostgreSQL: not


@pytest.mark.parametrize(
    ("fail", "error", "line", "level", "traceback"),
    [
        (unreachable, "connection to server", ": connection to server at 127.0.0.1 failed", "WARNING", False),
        (at_fault, "nope", "", "ERROR", True),
    ],
    ids=["out of reach: one line", "at fault: its traceback"],
)
def test_a_failing_rule_logs_one_line_for_an_outage_and_a_traceback_for_anything_else(
    a_cart, engine, monkeypatch, caplog, fail, error, line, level, traceback
) -> None:
    original = lookup_module.candidate_queries.batches

    def failing(session, rule, *rest):  # type: ignore[no-untyped-def]
        if rule.id == "abandoned_cart":
            fail(session)
        yield from original(session, rule, *rest)

    monkeypatch.setattr(lookup_module.candidate_queries, "batches", failing)
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    with caplog.at_level(logging.WARNING, logger="automator.engine"):
        engine.evaluate(now, report)

    assert error in (report.rules["abandoned_cart"].error or "")
    [record] = [r for r in caplog.records if r.getMessage().startswith("rule abandoned_cart failed")]
    assert record.getMessage() == f"rule abandoned_cart failed{line}"
    assert record.levelname == level and (record.exc_info is not None) == traceback
