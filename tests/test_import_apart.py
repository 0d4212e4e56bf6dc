"""A big events or contacts file read in a process of its own (`importing.overlap.reading`)
on PostgreSQL: the same report, rows and order as when it is read in the importing process,
every problem told with its line, and the reading process's end, whatever it is, felt by
the importer."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from automator.errors import AutomatorError, ImportRecordError
from automator.importing import contacts as contact_import
from automator.importing import events as event_import
from automator.importing import import_contacts, import_events, overlap
from automator.importing.files import RecordFile
from automator.importing.report import ImportReport, Tally
from automator.store import contacts as contact_store
from automator.store import events as event_store
from tests.conftest import utc, write_jsonl
from tests.importing import cart_event, contact, event_keys, import_failing_at_the_second_batch, write_csv

NOW = datetime(2026, 11, 20, 5, tzinfo=UTC)


@pytest.fixture
def every_file_big(monkeypatch):
    """Every file read apart where a store reads big ones apart, in batches of three."""
    monkeypatch.setattr(overlap, "APART_FROM_BYTES", 0)
    monkeypatch.setattr(event_store, "batch_size", lambda: 3)
    monkeypatch.setattr(contact_store, "batch_size", lambda: 3)


@pytest.fixture
def read_where(monkeypatch) -> list[bool]:
    """Whether each import's file was read in a process of its own."""
    where: list[bool] = []
    real = overlap.reading

    def noting(*args, **kwargs):
        with real(*args, **kwargs) as file:
            where.append(file.apart)
            yield file

    patched = contextmanager(noting)
    monkeypatch.setattr(event_import, "reading", patched)
    monkeypatch.setattr(contact_import, "reading", patched)
    return where


def test_events_read_apart_are_stored_as_read_here_with_each_problem_on_its_line(
    every_file_big, read_where, project, store, tmp_path
):
    lines = [
        cart_event(id="e1"),
        cart_event(id="e2", email="hoa@example.com"),
        cart_event(id="e1"),  # a duplicate of line 1
        cart_event(id="e3", email="not an address"),
        cart_event(id="e4"),
        cart_event(id="e5", email="hoa@example.com"),
        cart_event(id="e6"),
    ]
    path = write_jsonl(tmp_path / "e.jsonl", lines)
    seen: list[tuple[int, int]] = []

    class Watching:
        def __init__(self):
            self.problems: list[str] = []

        def advanced(self, done, total):
            seen.append((done, total))

        def rejected(self, error):
            self.problems.append(str(error))

        def warned(self, warning):
            self.problems.append(str(warning))

    watcher = Watching()
    report = import_events(store, path, project.journey, NOW, watcher)

    apart = store.engine.dialect.name == "postgresql"
    assert read_where == [apart]
    assert (report.read, report.imported, report.duplicates, report.rejected) == (7, 5, 1, 1)
    reason = 'email: email "not an address" is not valid: An email address must have an @-sign.'
    assert watcher.problems == [f"{path}:4: {reason}"]
    assert event_keys(store, "lan@example.com") == ["e6", "e4", "e1"]  # newest first, e1's first line
    assert event_keys(store, "hoa@example.com") == ["e5", "e2"]
    size = path.stat().st_size
    assert seen and seen[-1] == (size, size) and all(total == size for _, total in seen)


def test_contacts_read_apart_are_stored_as_read_here_dates_in_their_stored_zones(
    every_file_big, read_where, project, store, tmp_path
):
    """The reading process writes a batch's rows, a date given without a time in a record
    that names no zone at midnight in the project's zone: the importer places it in the
    stored contact's zone, when it has one."""
    first = write_csv(tmp_path / "first.csv", "email,timezone", "bob@example.com,America/New_York")
    later = write_csv(
        tmp_path / "later.csv",
        "email,first_name,last_name,timezone,birthday,plan",
        "bob@example.com,Bob,,,1988-12-03,",  # a date alone: midnight in New York
        "lan@example.com,Lan,O\\Brien,,,pro",
        "not an address,X,,,,",
        "lan@example.com,,Nguyễn,,,\\N",  # merged into line 3's record
        "hoa@example.com,Hoa,,Asia/Tokyo,1990-01-01,",  # its own zone: placed where read
        "new@example.com,,,,1990-01-01,",  # new: the project's zone (Asia/Ho_Chi_Minh)
        "kim@example.com,Kim,O\\Brien,,,basic",
    )

    assert import_contacts(store, first, project.journey, project.settings.zone, NOW).imported == 1
    report = import_contacts(store, later, project.journey, project.settings.zone, NOW)

    assert read_where == [store.engine.dialect.name == "postgresql"] * 2
    assert (report.read, report.imported, report.merged, report.rejected) == (7, 6, 1, 1)
    assert [str(error) for error in report.errors] == [
        f'{later}:4: email: email "not an address" is not valid: An email address must have an @-sign.'
    ]
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.last_name, lan.attributes) == ("Lan", "Nguyễn", {"plan": "\\N"})
    with store.session() as session:
        birthdays = {
            email: contact_store.dates(session, contact(store, email).id).get("birthday")
            for email in ("bob@example.com", "hoa@example.com", "new@example.com", "kim@example.com")
        }
    assert birthdays == {
        "bob@example.com": utc("1988-12-03 05:00"),
        "hoa@example.com": utc("1989-12-31 15:00"),
        "new@example.com": utc("1989-12-31 17:00"),
        "kim@example.com": None,
    }
    assert contact(store, "bob@example.com").timezone == "America/New_York"
    kim = contact(store, "kim@example.com")
    assert (kim.first_name, kim.last_name, kim.attributes) == ("Kim", "O\\Brien", {"plan": "basic"})
    assert contact(store, "new@example.com").id < kim.id  # made in the file's order


def test_the_reading_process_imports_no_database_library():
    """What a reading process imports to read a file: neither the store nor the database's
    libraries, which would double its memory."""
    modules = ("automator.importing.contacts", "automator.importing.events", "automator.importing.overlap")
    code = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'sqlmodel', 'psycopg')"
        " or m.startswith('automator.store')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"


def test_an_import_that_stops_ends_its_reading_process(every_file_big, project, store, tmp_path, monkeypatch):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads its files in the importing process")

    calls = import_failing_at_the_second_batch(store, project, tmp_path, monkeypatch)

    assert calls == [["e0", "e1", "e2"], ["e3", "e4", "e5"]]
    assert multiprocessing.active_children() == []  # the reader, reading ahead, was ended


# What a reading process runs is named by its module: these stand for a reader that fails,
# dies, or rejects every record.


def _failing_after_one(records: RecordFile, path: Path, tally: Tally, size: int) -> Iterator[list[Any]]:
    yield ["first"]
    raise ValueError(f"{path}: the disk went away")


def _dying(records: RecordFile, path: Path, tally: Tally, size: int) -> Iterator[list[Any]]:
    os._exit(3)  # as a process the kernel kills for its memory ends: nothing said, nothing sent
    yield []


def _rejecting(records: RecordFile, path: Path, tally: Tally, size: int) -> Iterator[list[Any]]:
    for line, record, _ in records:
        tally.report.read += 1
        tally.reject(ImportRecordError(str(path), line, f"refused {record['n']}"))
        yield [line]


def read_apart(read, path: Path) -> tuple[list[Any], Tally]:
    """The batches `read` gives for `path` when read in a process of its own, and the tally
    told of what it found."""
    tally = Tally(None)
    with overlap.reading(read, path, (), tally, 3, apart=True) as file:
        assert file.apart
        return list(file.batches), tally


@pytest.fixture
def big_enough(monkeypatch, tmp_path) -> Path:
    monkeypatch.setattr(overlap, "APART_FROM_BYTES", 0)
    monkeypatch.setattr(overlap, "WATCH_EVERY", 0.05)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(3)), encoding="utf-8")
    return path


def test_a_reading_process_s_error_is_raised_by_the_importer_after_the_batches_before(big_enough):
    tally = Tally(None)
    with overlap.reading(_failing_after_one, big_enough, (), tally, 3, apart=True) as file:
        assert file.apart and next(file.batches) == ["first"]
        with pytest.raises(ValueError, match=f"{big_enough}: the disk went away"):
            next(file.batches)
    assert multiprocessing.active_children() == []


def test_a_reading_process_that_dies_is_an_error_not_a_wait(big_enough):
    with pytest.raises(AutomatorError, match=r"ended \(exit code 3\) before the file's end"):
        read_apart(_dying, big_enough)


def test_a_reading_process_s_rejections_reach_the_importer_with_their_lines(big_enough):
    got, tally = read_apart(_rejecting, big_enough)

    assert got == [[1], [2], [3]]
    assert tally.report.read == 3 and tally.report.rejected == 3
    assert [str(error) for error in tally.report.errors] == [
        f"{big_enough}:{n + 1}: refused {n}" for n in range(3)
    ]
    assert isinstance(tally.report, ImportReport)
