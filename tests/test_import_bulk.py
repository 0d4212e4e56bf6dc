"""Bulk import: files stored in batches (a COPY and one upsert per batch on PostgreSQL; one
transaction with its indexes built at the end into an empty SQLite store), each problem
passed on as it is found, a progress bar on a terminal and one summary line elsewhere."""

import gc
import os
import pty
import select
import subprocess
import sys
import threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from sqlalchemy import inspect

from automator import memory
from automator.importing import import_contacts, import_events
from automator.importing.overlap import stored_in_order
from automator.store import Store, bulk, suppressions
from automator.store import contacts as contact_store
from automator.store import events as event_store
from automator.tables import Contact, StageChange, Suppression
from tests.conftest import utc, write_jsonl
from tests.importing import (
    cart_event,
    contact,
    event_keys,
    import_failing_at_the_second_batch,
    stored_events,
    write_csv,
)

NOW = datetime(2026, 11, 20, 5, tzinfo=UTC)


@pytest.fixture
def small_batches(monkeypatch):
    """Three records a batch, so that a few lines cross batch boundaries."""
    monkeypatch.setattr(contact_store, "batch_size", lambda: 3)
    monkeypatch.setattr(event_store, "batch_size", lambda: 3)


class Collected:
    """A watcher that keeps what it is told."""

    def __init__(self):
        self.problems, self.progress, self.steps = [], [], []

    def advanced(self, done, total):
        self.progress.append((done, total))

    def rejected(self, error):
        self.problems.append(f"rejected {error}")

    def warned(self, warning):
        self.problems.append(f"warning {warning}")

    def finishing(self, step):
        self.steps.append(step)


def test_events_over_many_batches_are_each_stored_once_in_the_files_order(
    small_batches, project, store, tmp_path
):
    lines = [cart_event(id=f"e{n}", at=f"2026-11-20T0{n}:00:00Z") for n in range(8)]
    lines[5] = cart_event(id="e1", at="2026-11-20T09:00:00Z")  # a key seen in an earlier batch
    lines.insert(3, '{"type": "cart_updated",')
    path = write_jsonl(tmp_path / "e.jsonl", [*lines, cart_event(id="e7")])
    watcher = Collected()
    report = import_events(store, path, project.journey, NOW, watcher)
    assert (report.read, report.imported, report.duplicates, report.rejected) == (10, 7, 2, 1)
    assert report.errors == [] and watcher.problems[0].startswith(f"rejected {path}:4: not valid JSON")
    assert event_keys(store, "lan@example.com") == ["e7", "e6", "e4", "e3", "e2", "e1", "e0"]
    assert stored_events(store, "lan@example.com")[5].at == datetime(2026, 11, 20, 1, tzinfo=UTC)
    assert watcher.progress[-1] == (path.stat().st_size, path.stat().st_size)
    assert watcher.steps == ["building indexes"]  # a first load's end, told before it starts


def test_without_a_watcher_the_report_keeps_every_problem(project, store, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(email="lan"), "[]", cart_event(id="e2")])
    report = import_events(store, path, project.journey, NOW)
    assert [error.record for error in report.errors] == [1, 2]
    assert (report.rejected, report.imported) == (2, 1)


def test_contacts_over_many_batches_keep_the_last_line_of_each_email(small_batches, project, store, tmp_path):
    rows = [f"c{n}@example.com,Name{n},basic" for n in range(7)]
    rows.insert(4, "c0@example.com,Again,pro")  # the same contact, in the next batch
    rows.insert(2, "c1@example.com,Twice,team")  # the same contact, in the same batch
    path = write_csv(tmp_path / "c.csv", "email,first_name,plan", *rows)
    report = import_contacts(store, path, project.journey, project.settings.zone, NOW)
    assert (report.read, report.rejected) == (9, 0)
    assert (contact(store, "c0@example.com").first_name, contact(store, "c0@example.com").attributes) == (
        "Again",
        {"plan": "pro"},
    )
    assert contact(store, "c1@example.com").first_name == "Twice"
    with store.session() as session:
        assert len(contact_store.ids_by_email(session, [f"c{n}@example.com" for n in range(7)])) == 7


def test_an_address_again_in_a_later_batch_is_merged_as_in_the_same_batch(
    small_batches, project, store, tmp_path
):
    before = write_csv(tmp_path / "before.csv", "email,first_name", "old@example.com,Old")
    import_contacts(store, before, project.journey, project.settings.zone, NOW)
    rows = ["Lan@Example.com,Lan,", "b@example.com,B,", "LAN@example.com,,pro"]  # one batch
    rows += ["c@example.com,C,", "d@example.com,D,", "lan@EXAMPLE.COM,Lan Anh,"]  # the next
    rows += ["old@example.com,Older,"]  # stored before the import: not merged
    path = write_csv(tmp_path / "c.csv", "email,first_name,plan", *rows)

    report = import_contacts(store, path, project.journey, project.settings.zone, NOW)

    assert (report.read, report.imported, report.merged) == (7, 7, 2)
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.attributes) == ("Lan Anh", {"plan": "pro"})


def test_a_reimported_stage_moves_the_contact_and_is_recorded(cli, store, tmp_path):
    cli("contacts", "import", str(write_csv(tmp_path / "a.csv", "email,stage", "lan@example.com,awareness")))
    cli("contacts", "import", str(write_csv(tmp_path / "b.csv", "email,stage", "lan@example.com,retention")))
    lan = contact(store, "lan@example.com")
    with store.session() as session:
        history = [(c.from_stage, c.to_stage, c.cause) for c in contact_store.stage_history(session, lan.id)]
    assert history == [(None, "awareness", "import"), ("awareness", "retention", "import")]
    assert lan.stage == "retention"


def test_journey_moves_follow_the_events_order_in_a_batch_and_the_files_across_batches(
    small_batches, project, store, make_contact, tmp_path
):
    made = utc("2026-11-01 00:00")
    make_contact("lan@example.com", stage="awareness", _now=made)
    make_contact("minh@example.com", stage=None, _now=made)
    make_contact("hoa@example.com", stage="retention", _now=made)
    lan, minh, hoa = "lan@example.com", "minh@example.com", "hoa@example.com"
    lines = [
        # The first batch: Lan's three moves, by time and then key.
        cart_event(id="o1", type="order_placed", email=lan, at="2026-11-20T03:00:00Z"),
        cart_event(id="k1", type="checkout_started", email=lan, at="2026-11-20T01:00:00Z"),
        cart_event(id="c1", email=lan, at="2026-11-20T01:00:00Z"),
        # The second: a contact without a stage moves; none moves backward or without a move.
        cart_event(id="c2", email=minh, at="2026-11-20T01:00:00Z"),
        cart_event(id="c3", email=hoa, at="2026-11-20T01:00:00Z"),
        cart_event(id="v1", type="page_viewed", email=minh, at="2026-11-20T00:00:00Z"),
        # The third: a move after an earlier batch's; a key stored before moves nobody.
        cart_event(id="c4", email=lan, at="2026-11-20T04:00:00Z"),
        # Minh's order is earlier than the second batch's cart: a batch's moves come after
        # those of the batches before it, whatever their times.
        cart_event(id="o2", type="order_placed", email=minh, at="2026-11-20T00:30:00Z"),
        cart_event(id="c1", type="order_placed", email=hoa, at="2026-11-19T00:00:00Z"),
    ]
    path = write_jsonl(tmp_path / "e.jsonl", lines)

    report = import_events(store, path, project.journey, NOW)

    assert (report.imported, report.duplicates) == (8, 1)
    with store.session() as session:
        rows = session.execute(
            sqlalchemy.select(StageChange.from_stage, StageChange.to_stage, StageChange.at, StageChange.cause)
            .where(StageChange.cause.like("event %"))
            .order_by(StageChange.id)
        ).all()
        contacts = session.execute(sqlalchemy.select(Contact)).scalars()
        stages = {each.email: (each.stage, each.stage_entered_at) for each in contacts}
    assert [tuple(row) for row in rows] == [
        ("awareness", "consideration", utc("2026-11-20 01:00"), "event cart_updated (c1)"),
        ("consideration", "conversion", utc("2026-11-20 01:00"), "event checkout_started (k1)"),
        ("conversion", "retention", utc("2026-11-20 03:00"), "event order_placed (o1)"),
        (None, "consideration", utc("2026-11-20 01:00"), "event cart_updated (c2)"),
        ("consideration", "retention", utc("2026-11-20 00:30"), "event order_placed (o2)"),
    ]
    assert stages == {
        lan: ("retention", utc("2026-11-20 03:00")),
        minh: ("retention", utc("2026-11-20 00:30")),
        hoa: ("retention", made),
    }


def test_both_stores_move_contacts_in_batches_that_end_in_the_same_places(project, store, tmp_path):
    """Where a batch ends shows in the moves: each batch's are in time order, after those of
    the batches before it. The stores once ended their batches at 5,000 and 10,000 events,
    and stored different stage changes for the same file."""
    viewed = [
        {"id": f"v{n}", "type": "page_viewed", "email": "ann@example.com", "at": "2026-11-01T00:00:00Z"}
        for n in range(4_999)
    ]
    x = "x@example.com"
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [
            *viewed,
            cart_event(id="x-late", type="order_placed", email=x, at="2026-11-02T00:00:00Z"),
            # The 5,001st event, past where SQLite's batches ended, and earlier in time.
            cart_event(id="x-early", type="checkout_started", email=x, at="2026-11-01T12:00:00Z"),
        ],
    )

    assert import_events(store, path, project.journey, NOW).imported == len(viewed) + 2

    with store.session() as session:
        rows = session.execute(
            sqlalchemy.select(StageChange.from_stage, StageChange.to_stage, StageChange.cause)
            .where(StageChange.cause.like("event %"))
            .order_by(StageChange.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("awareness", "conversion", "event checkout_started (x-early)"),
        ("conversion", "retention", "event order_placed (x-late)"),
    ]
    assert contact(store, x).stage_entered_at == utc("2026-11-02 00:00")


def test_an_erased_address_that_is_imported_again_is_suppressed(project, store, tmp_path):
    """By its address, which the rule lookups compare, beside the erasure's hash; an address
    of any letters is hashed as `hashed` hashes it (on PostgreSQL, by the server)."""
    with store.session() as session:
        for email in ("lan@example.com", "hà.lê@ví.example"):
            suppressions.add(session, suppressions.hashed(email), suppressions.ERASED, "", NOW)
    path = write_csv(
        tmp_path / "c.csv",
        "email,first_name",
        "lan@example.com,Lan",
        "minh@example.com,Minh",
        "Hà.Lê@Ví.example,Hà",
    )
    import_contacts(store, path, project.journey, project.settings.zone, NOW)
    events = write_jsonl(tmp_path / "e.jsonl", [cart_event(email="hoa@example.com")])
    with store.session() as session:
        suppressions.add(session, suppressions.hashed("hoa@example.com"), suppressions.ERASED, "", NOW)
    import_events(store, events, project.journey, NOW)
    with store.session() as session:
        by_address = {
            email: (found.reason, found.note)
            for email in ("lan@example.com", "hoa@example.com", "hà.lê@ví.example", "minh@example.com")
            if (found := session.get(Suppression, email)) is not None
        }
    again = ("erased", "erased before, arrived again")
    assert by_address == {"lan@example.com": again, "hoa@example.com": again, "hà.lê@ví.example": again}


def schema_of(connection, *tables):
    """Each table's indexes (those on expressions too, which SQLAlchemy does not reflect on
    SQLite) and foreign keys, by name."""
    if connection.dialect.name == "sqlite":
        listed = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? ORDER BY name"
    else:
        listed = "SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY indexname"
    keys = inspect(connection)
    return {
        table: (
            [name for (name,) in connection.exec_driver_sql(listed, (table,))],
            sorted(key["name"] or "" for key in keys.get_foreign_keys(table)),
        )
        for table in tables
    }


def event_indexes(store):
    with store.engine.connect() as connection:
        return schema_of(connection, "event")["event"][0]


LOADED = {"events": ("event", "stage_change"), "contacts": ("contact", "stage_change", "contact_date")}
STORED_BY = {"contacts": (contact_store, "bulk_upsert"), "events": (event_store, "bulk_add")}


def on_each_batch(kind, monkeypatch, note):
    """`note(session)` as each batch of an import of `kind` is stored, before it is."""
    module, name = STORED_BY[kind]
    real = getattr(module, name)

    def noting(session, *args):
        note(session)
        return real(session, *args)

    monkeypatch.setattr(module, name, noting)


def import_records(kind, count, store, project, tmp_path):
    """An import of `count` contacts (each with a date attribute) or cart events."""
    if kind == "contacts":
        lines = [f"c{n}@example.com,C{n},2026-0{n % 9 + 1}-01" for n in range(count)]
        path = write_csv(tmp_path / "c.csv", "email,first_name,birthday", *lines)
        return import_contacts(store, path, project.journey, ZoneInfo("UTC"), NOW)
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id=f"e{n}") for n in range(count)])
    return import_events(store, path, project.journey, NOW)


@pytest.mark.parametrize("kind", ["contacts", "events"])
def test_a_load_into_an_empty_table_builds_its_indexes_and_keys_at_the_end(
    kind, small_batches, project, store, tmp_path, monkeypatch
):
    tables = LOADED[kind]
    with store.engine.connect() as connection:
        before = schema_of(connection, *tables)
    during, sessions = [], []  # the sessions kept: a freed one's id() may be given to the next

    def note(session):
        during.append(schema_of(session.connection(), *tables))
        sessions.append(session)

    on_each_batch(kind, monkeypatch, note)
    report = import_records(kind, 10, store, project, tmp_path)

    assert report.imported == 10 and len(during) == 4 and len({id(each) for each in sessions}) == 1
    with store.engine.connect() as connection:
        assert schema_of(connection, *tables) == before
    # While it loaded, fewer indexes were kept up, and on PostgreSQL no foreign key.
    for table in tables:
        assert set(during[0][table][0]) < set(before[table][0])
        assert during[0][table][1] == ([] if store.engine.dialect.name == "postgresql" else before[table][1])


def test_events_keep_every_character_of_their_keys_and_properties(project, store, tmp_path):
    """PostgreSQL copies an event as a line of text, where a backslash, a tab and a line
    end mean something: each arrives as it was sent, and SQLite stores the same."""
    properties = {
        "note": 'line one\nline two\ttabbed \\ "quoted" \\n not a line end',
        "path": "C:\\shop\\carts",
        "text": "Huế, Lê Lợi \u00e9 \U0001f600",
        "big": 2**70,
        "nested": {"list": [1, 2.5, None, True, "a\\tb"]},
    }
    lines = [
        cart_event(id="k\\1", properties=properties, at="2026-11-20T10:00:00.123456+07:00"),
        cart_event(id="k\\t2", properties={"x": "\\N"}, at="2026-11-19T23:59:59-05:00"),
    ]
    path = write_jsonl(tmp_path / "e.jsonl", lines)

    report = import_events(store, path, project.journey, NOW)

    assert report.imported == 2
    first, second = sorted(stored_events(store, "lan@example.com"), key=lambda event: event.key)
    assert (first.key, first.properties, first.at.astimezone(UTC)) == (
        "k\\1",
        properties,
        datetime(2026, 11, 20, 3, 0, 0, 123456, UTC),
    )
    assert (second.key, second.properties, second.at.astimezone(UTC)) == (
        "k\\t2",
        {"x": "\\N"},
        datetime(2026, 11, 20, 4, 59, 59, tzinfo=UTC),
    )


def test_contacts_keep_every_character_of_their_fields_and_attributes(project, store, tmp_path):
    """PostgreSQL copies a contact as a line of text too, where a backslash and `\\N` (NULL)
    mean something: each arrives as it was sent, and SQLite stores the same."""
    attributes = {
        "note": 'a \\ "quoted" \\n not a line end',
        "path": "C:\\shop",
        "text": "Huế, Lê Lợi \u00e9 \U0001f600",
        "big": 2**70,
        "nested": {"list": [1, 2.5, None, True, "a\\tb"]},
        "renews_at": "2026-12-20T09:30:00+07:00",
    }
    record = {"email": "lan@example.com", "first_name": "O\\Brien", "last_name": "\\N", **attributes}
    path = write_jsonl(tmp_path / "c.jsonl", [record])

    assert import_contacts(store, path, project.journey, project.settings.zone, NOW).imported == 1

    stored = contact(store, "lan@example.com")
    assert (stored.first_name, stored.last_name, stored.locale) == ("O\\Brien", "\\N", None)
    assert stored.attributes == {**attributes, "renews_at": "2026-12-20T02:30:00+00:00"}
    with store.session() as session:
        assert contact_store.dates(session, stored.id) == {"renews_at": utc("2026-12-20 02:30")}


def test_attributes_keep_their_numbers_as_the_file_wrote_them(project, store, tmp_path):
    """Made and then updated by an import, on both stores: PostgreSQL's `jsonb` would
    rewrite a float that is a whole number as an integer (1e16, 1.5e300) and lose the sign
    of -0.0. The stored attributes keep their order, a later record's values in place."""
    first = {"email": "lan@example.com", "score": 1e16, "big": 1.5e300, "zero": -0.0, "plan": "pro"}
    later = {"email": "lan@example.com", "plan": "max", "small": 1e-300, "count": 3}
    for name, record in (("first", first), ("later", later)):
        path = write_jsonl(tmp_path / f"{name}.jsonl", [record])
        assert import_contacts(store, path, project.journey, project.settings.zone, NOW).imported == 1
        stored = contact(store, "lan@example.com").attributes
        assert [(key, repr(value)) for key, value in stored.items()] == [
            ("score", "1e+16"),
            ("big", "1.5e+300"),
            ("zero", "-0.0"),
            ("plan", repr(record["plan"])),
            *([("small", "1e-300"), ("count", "3")] if record is later else []),
        ]


def test_text_copied_on_a_connection_in_another_encoding_arrives_as_it_was(project, store, tmp_path):
    """The COPY rows are written as UTF-8 where the file is read: a connection whose client
    encoding is another (PGCLIENTENCODING=LATIN1) stores them as they were all the same."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no client encoding")
    latin = Store(f"{store.engine.url.render_as_string(hide_password=False)}?client_encoding=LATIN1")
    with latin.connect() as connection:
        assert connection.exec_driver_sql("SHOW client_encoding").scalar() == "LATIN1"
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"email": "lan@example.com", "last_name": "Lê", "city": "Huế"}]
    )
    events = write_jsonl(tmp_path / "e.jsonl", [cart_event(properties={"note": "Trần Hưng Đạo"})])
    try:
        import_contacts(latin, contacts, project.journey, project.settings.zone, NOW)
        import_events(latin, events, project.journey, NOW)
    finally:
        latin.dispose()

    stored = contact(store, "lan@example.com")
    assert (stored.last_name, stored.attributes) == ("Lê", {"city": "Huế"})
    assert [event.properties for event in stored_events(store, "lan@example.com")] == [
        {"note": "Trần Hưng Đạo"}
    ]


def test_a_load_that_fails_leaves_an_empty_store_as_it_was(
    small_batches, project, store, tmp_path, monkeypatch
):
    with store.engine.connect() as connection:
        before = schema_of(connection, "event")

    calls = import_failing_at_the_second_batch(store, project, tmp_path, monkeypatch)

    assert [len(keys) for keys in calls] == [3, 3]  # nothing stored after the failure
    assert event_keys(store, "lan@example.com") == []
    with store.engine.connect() as connection:
        assert schema_of(connection, "event") == before


def test_a_batch_that_fails_to_be_stored_stops_the_import_after_the_ones_before(
    small_batches, project, store, tmp_path, monkeypatch
):
    earlier = write_jsonl(tmp_path / "earlier.jsonl", [cart_event(id="x1", email="hoa@example.com")])
    import_events(store, earlier, project.journey, NOW)  # into a table with rows: batch by batch

    calls = import_failing_at_the_second_batch(store, project, tmp_path, monkeypatch)

    assert calls == [["e0", "e1", "e2"], ["e3", "e4", "e5"]]  # in order, and none after the failure
    assert sorted(event_keys(store, "lan@example.com")) == ["e0", "e1", "e2"]


def test_a_postgresql_table_in_use_is_loaded_batch_by_batch(
    small_batches, project, store, tmp_path, monkeypatch
):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's load waits for the write lock as any writer does")
    monkeypatch.setattr(bulk, "LOAD_LOCK_WAIT", "100ms")
    sessions = []  # kept: a freed session's id() may be given to the next
    on_each_batch("events", monkeypatch, sessions.append)
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id=f"e{n}") for n in range(7)])
    with store.engine.connect() as reader:
        reader.exec_driver_sql("SELECT count(*) FROM event")  # a transaction reading the table, open

        report = import_events(store, path, project.journey, NOW)

        # three batches, each committed alone
        assert (report.imported, len({id(each) for each in sessions})) == (7, 3)
        assert event_keys(store, "lan@example.com") == [f"e{n}" for n in reversed(range(7))]


def test_a_postgresql_user_that_does_not_own_the_tables_loads_batch_by_batch(
    small_batches, project, store, tmp_path
):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no users")
    with store.engine.begin() as connection:  # as the owner: a user that may only write the tables
        connection.exec_driver_sql(
            "DO $$ BEGIN CREATE ROLE automator_writer LOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        for grant in ("ALL ON ALL TABLES IN SCHEMA public", "ALL ON ALL SEQUENCES IN SCHEMA public"):
            connection.exec_driver_sql(f"GRANT {grant} TO automator_writer")
    writer = Store(store.engine.url.set(username="automator_writer").render_as_string(hide_password=False))
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id=f"e{n}") for n in range(7)])
    try:
        report = import_events(writer, path, project.journey, NOW)
    finally:
        writer.dispose()

    assert report.imported == 7
    assert event_keys(store, "lan@example.com") == [f"e{n}" for n in reversed(range(7))]


@pytest.mark.parametrize("kind", ["contacts", "events"])
def test_a_postgresql_statement_timeout_does_not_end_a_load_at_its_index_builds(
    kind, small_batches, project, store, tmp_path, monkeypatch
):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no statement_timeout")
    module, name = STORED_BY[kind]
    real = getattr(module, name)

    def stored_then_timed(session, *args):
        """Each batch stored with no limit, then a limit of 1 ms for what follows in the
        load's transaction: as a server-wide statement_timeout would be for an index build
        over millions of rows."""
        connection = session.connection()
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        stored = real(session, *args)
        connection.exec_driver_sql("SET LOCAL statement_timeout = '1ms'")
        return stored

    monkeypatch.setattr(module, name, stored_then_timed)
    tables = LOADED[kind]
    with store.engine.connect() as connection:
        before = schema_of(connection, *tables)

    report = import_records(kind, 10, store, project, tmp_path)

    assert report.imported == 10
    with store.engine.connect() as connection:
        assert schema_of(connection, *tables) == before  # every index and key built again
        assert connection.exec_driver_sql(f"SELECT count(*) FROM {tables[0]}").scalar() == 10


@pytest.mark.parametrize("kind", ["contacts", "events"])
def test_an_import_collects_only_its_own_objects_and_seldom_while_it_runs(
    kind, project, store, tmp_path, monkeypatch
):
    seen: list[tuple[int, int]] = []
    on_each_batch(kind, monkeypatch, lambda _: seen.append((gc.get_freeze_count(), gc.get_threshold()[0])))
    before, threshold = gc.get_freeze_count(), gc.get_threshold()

    report = import_records(kind, 1, store, project, tmp_path)

    assert report.imported == 1 and len(seen) == 1
    frozen, young = seen[0]
    assert frozen > before  # the process's older objects set aside while the file was stored
    assert young >= memory.YOUNG_GARBAGE > threshold[0]
    assert (gc.get_freeze_count(), gc.get_threshold()) == (before, threshold)  # and back after


def test_stored_in_order_gives_each_batch_its_result_in_order_on_a_thread():
    stored_on = []

    def store(batch):
        stored_on.append(threading.current_thread() is not threading.main_thread())
        return sum(batch)

    batches = iter([[1, 2], [3], [4, 5, 6]])
    assert list(stored_in_order(batches, store, background=True)) == [([1, 2], 3), ([3], 3), ([4, 5, 6], 15)]
    assert stored_on == [True, True, True]


@pytest.mark.sqlite_only
def test_an_import_on_a_terminal_shows_a_progress_bar(process_env, project_dir, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,birthday", "lan@example.com,17/05/1990", "bad,x")
    leader, follower = pty.openpty()
    command = [sys.executable, "-c", "from automator.cli import app; app()", "--project", str(project_dir)]
    env = {**process_env, "COLUMNS": "100", "TERM": "xterm"}
    result = subprocess.run(
        [*command, "contacts", "import", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=follower,
        timeout=60,
    )
    os.close(follower)
    shown = b""
    while select.select([leader], [], [], 0.5)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    text = shown.decode(errors="replace")
    assert "importing contacts" in text and "━" in text
    assert "building indexes" in text  # a first load's end, shown while it runs
    assert f"rejected {path}:3: email:" in text and f"warning {path}:2: birthday:" in text
    assert result.stdout.decode() == "imported 1 contacts, rejected 1, 1 warning\n"
