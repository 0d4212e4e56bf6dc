"""The SQLite store copies its write-ahead log into the database file in the background, so
that a tick's commits never wait for the disk, and stops doing so when it is closed; its
fast many-row insert stores exactly what SQLAlchemy's own would; commands started at once on
a new database all open it; a writing session's savepoints nest in its transaction, which
commits only when told, and keep what they may undo in memory; a database made when the
bodies were kept in the message row gets them moved, and its messages keep their content;
bodies are stored packed, and bodies stored as text before still read; times go in as their
UTC instant, and a time without a zone is refused."""

from __future__ import annotations

import multiprocessing
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lz4.frame
import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, func, inspect, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateTable

import automator.store.sqlite as store_module
from automator.packing import pack, unpack
from automator.store import Store, execute_many, insert, queueing, table
from automator.store import claims as claim_store
from automator.store import contacts as contact_store
from automator.store import messages as message_store
from automator.tables import Message, MessageContent, Suppression, UTCDateTime
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


def test_a_store_used_again_after_closing_starts_a_new_checkpoint_thread(tmp_path: Path) -> None:
    others = set(checkpoint_threads())
    store = Store(f"sqlite:///{tmp_path / 'automator.db'}")
    store.create_schema()
    store.dispose()  # closed (as before copying the file, say), then used again
    row = {"email": "a@example.com", "reason": "manual", "created_at": utc("2026-11-20 03:00")}
    with store.session() as session:
        session.execute(SUPPRESSIONS.insert(), [row])

    started = set(checkpoint_threads()) - others
    store.dispose()

    assert len(started) == 1  # without it, the log would grow until a commit copies it, waiting
    assert set(checkpoint_threads()) - others == set()


def test_the_log_file_shrinks_back_once_a_big_write_is_copied_into_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "WAL_KEPT_BYTES", 64 * 1024)
    path = tmp_path / "automator.db"
    wal = Path(f"{path}-wal")
    store = Store(f"sqlite:///{path}")
    store.create_schema()
    suppress = "INSERT INTO suppression (email, reason, note, created_at) VALUES (?, ?, '', '2026-11-20')"
    with store.engine.begin() as connection:  # about 2 MB of log
        for index in range(2000):
            connection.exec_driver_sql(suppress, (f"big{index}@example.com", "x" * 1000))
    grown = wal.stat().st_size
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    with store.engine.begin() as connection:  # the next write starts the log over
        connection.exec_driver_sql(suppress, ("one@example.com", ""))
    kept = wal.stat().st_size
    store.dispose()

    assert grown > 1_000_000
    assert kept <= 64 * 1024 + 2 * 4096  # the limit, and the frame just written


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


def _open_new_store(path: str, start: Any, results: Any) -> None:
    start.wait(timeout=60)  # every process opens the database at the same moment
    try:
        store = Store(f"sqlite:///{path}")
        store.create_schema()
        store.dispose()
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_commands_started_at_once_on_a_new_database_all_open_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    path = str(tmp_path / "automator.db")
    processes = [context.Process(target=_open_new_store, args=(path, start, results)) for _ in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok"] * 4
    store = Store(f"sqlite:///{path}")
    assert "message" in inspect(store.engine).get_table_names()
    store.dispose()


def test_savepoints_of_a_writing_session_nest_in_its_transaction(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'automator.db'}")
    store.create_schema()

    def suppress(session: Any, email: str) -> None:
        row = {"email": email, "reason": "manual", "note": "", "created_at": utc("2026-11-20 03:00")}
        execute_many(session, SUPPRESSIONS.insert(), [row])

    def stored() -> list[str]:
        with store.session() as session:
            return sorted(session.execute(select(SUPPRESSIONS.c.email)).scalars())

    def temp_store(session: Any) -> int:
        return int(session.connection().exec_driver_sql("PRAGMA temp_store").scalar_one())

    session = store.writing()
    assert temp_store(session) == 2  # what savepoints may undo is kept in memory
    with session.begin_nested():
        suppress(session, "lan@example.com")
    with pytest.raises(RuntimeError), session.begin_nested():
        suppress(session, "minh@example.com")
        raise RuntimeError("this one is undone alone")
    with session.begin_nested():
        suppress(session, "hoa@example.com")
    assert stored() == []  # a released savepoint commits nothing by itself
    session.commit()
    session.close()
    assert stored() == ["hoa@example.com", "lan@example.com"]
    with store.session() as again:  # the same connection (the pool gives the last one back)
        assert temp_store(again) == 0  # its temporary storage is the default again
    store.dispose()


def test_bodies_are_stored_packed_and_bodies_stored_as_text_before_still_read(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'automator.db'}")
    store.create_schema()
    now = utc("2026-11-20 12:00")
    html = "<p>" + "Giỏ hàng của bạn vẫn đang chờ. " * 100 + "</p>"
    with store.session() as session:
        contact_id = contact_store.ensure(session, ["lan@example.com"], now)["lan@example.com"]
        packed = message_store.enqueue(
            session, _queued(contact_id, "packed", now, 0), "queued", "Chào Lan", html
        )
        older = message_store.enqueue(
            session, _queued(contact_id, "older", now, 0), "queued", "x", "<p>x</p>"
        )
    with store.engine.begin() as connection:
        raw = connection.exec_driver_sql(
            "SELECT text_body, html_body FROM message_content WHERE message_id = ?", (packed,)
        ).one()
        # A body written by a release that stored text.
        connection.exec_driver_sql(
            "UPDATE message_content SET text_body = 'Older text', html_body = '<p>older</p>'"
            " WHERE message_id = ?",
            (older,),
        )
    with store.session() as session:
        assert packed is not None and older is not None
        contents = [message_store.content(session, message_id) for message_id in (packed, older)]
        due_ids = [m.id for m in claim_store.due(session, now, 10)]
        stored = message_store.bodies(session, due_ids)  # as stored, unpacked where the email is built
        due = {i: (unpack(packed.text), unpack(packed.html)) for i, packed in stored.items()}
    store.dispose()

    assert isinstance(raw.html_body, bytes) and len(raw.html_body) < len(html.encode()) / 10
    assert lz4.frame.decompress(raw.html_body).decode() == html  # the standard LZ4 frame format
    assert [(c.text, c.html) for c in contents] == [("Chào Lan", html), ("Older text", "<p>older</p>")]
    assert due == {packed: ("Chào Lan", html), older: ("Older text", "<p>older</p>")}


def test_on_postgresql_bodies_stay_in_their_row_unless_it_cannot_fit_a_page(postgres_server) -> None:
    """A few kilobytes of HTML compress to just over TOAST's 2 kB: they stay in the row. A
    body that cannot fit a page, compressed, still goes out to the TOAST table."""
    store = Store(postgres_server.new_database())
    now = utc("2026-11-20 12:00")
    html = "<p>" + " ".join(f"Giỏ hàng {n * 7919 % 10007} của bạn vẫn đang chờ." for n in range(450)) + "</p>"
    huge = "<p>" + "".join(f"{n * 7919 % 100003:x}" for n in range(40_000)) + "</p>"
    with store.session() as session:
        contact_id = contact_store.ensure(session, ["lan@example.com"], now)["lan@example.com"]
        ids = [
            message_store.enqueue(session, _queued(contact_id, occurrence, now), "queued", "Chào Lan", body)
            for occurrence, body in (("few", html), ("huge", huge))
        ]
    with store.engine.connect() as connection:
        compressed = connection.exec_driver_sql(
            "SELECT message_id, pg_column_size(html_body), octet_length(html_body) FROM message_content"
        ).all()
        toast = connection.exec_driver_sql(
            "SELECT reltoastrelid::regclass FROM pg_class WHERE relname = 'message_content'"
        ).scalar()
        toasted = connection.exec_driver_sql(f"SELECT count(DISTINCT chunk_id) FROM {toast}").scalar()
    with store.session() as session:
        read = [message_store.content(session, message_id).html for message_id in ids if message_id]
    store.dispose()

    assert [(i, 2100 < size < 4000 < length) for i, size, length in sorted(compressed)] == [
        (ids[0], True),
        (ids[1], False),
    ]
    assert toasted == 1  # the huge one's
    assert read == [html, huge]


def test_on_postgresql_bodies_stay_text_which_it_compresses_itself() -> None:
    dialect = postgresql.dialect()
    column = table(MessageContent).c.html_body
    bind = column.type.bind_processor(dialect)

    ddl = str(CreateTable(table(MessageContent)).compile(dialect=dialect))

    assert "html_body TEXT NOT NULL" in ddl
    assert bind is not None
    assert bind(pack("<p>Chào Lan</p>")) == "<p>Chào Lan</p>"  # as a render worker packed it
    assert bind("<p>Chào Lan</p>") == "<p>Chào Lan</p>"


def _queued(
    contact_id: int,
    occurrence: str,
    send_at: datetime,
    priority: int = 0,
    email: str = "lan@example.com",
    tag: str | None = None,
) -> dict[str, Any]:
    """A queued message's row values; `tag` tells apart the Message-IDs of rows written for
    the same occurrence."""
    return {
        "rule_id": "abandoned_cart",
        "contact_id": contact_id,
        "email": email,
        "occurrence": occurrence,
        "occurred_at": send_at,
        "status": "queued",
        "priority": priority,
        "due_at": send_at,
        "send_at": send_at,
        "expires_at": send_at + timedelta(days=1),
        "message_id": f"<{occurrence}.{tag}@shop.example>" if tag else f"<{occurrence}@shop.example>",
        "created_at": send_at,
    }


def test_due_messages_come_by_priority_then_send_time_across_priorities(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'automator.db'}")
    store.create_schema()
    now = utc("2026-11-20 12:00")
    # (occurrence, priority, minutes from now): negative is due, positive is not yet.
    planned = [
        ("low-early", 10, -50),
        ("high-late", 30, -5),
        ("mid-a", 20, -30),
        ("high-early", 30, -40),
        ("mid-future", 20, 10),
        ("none", 0, -60),
        ("mid-b", 20, -30),
        ("high-future", 30, 5),
    ]
    with store.session() as session:
        contact_ids = contact_store.ensure(session, ["lan@example.com"], now)
        for occurrence, priority, minutes in planned:
            values = _queued(
                contact_ids["lan@example.com"], occurrence, now + timedelta(minutes=minutes), priority
            )
            message_store.enqueue(session, values, "queued", "text", "<p>html</p>")
    with store.session() as session:
        first = [m.message_id for m in claim_store.due(session, now, 4)]
        every = [m.message_id for m in claim_store.due(session, now, 100)]
        due_ids = [m.id for m in claim_store.due(session, now, 100)]
        stored = message_store.bodies(session, due_ids).values()
        bodies = {(unpack(packed.text), unpack(packed.html)) for packed in stored}
    store.dispose()

    order = ["high-early", "high-late", "mid-a", "mid-b", "low-early", "none"]
    assert every == [f"<{name}@shop.example>" for name in order]
    assert first == every[:4]
    assert bodies == {("text", "<p>html</p>")}


def test_inserted_messages_get_their_own_ids_whether_or_not_some_were_queued_first(database_url: str) -> None:
    store = Store(database_url)
    store.create_schema()
    now = utc("2026-11-20 12:00")
    emails = [f"c{number}@example.com" for number in range(6)]

    def row(email: str, occurrence: str, tag: str) -> dict[str, object]:
        return _queued(contact_ids[email], occurrence, now, email=email, tag=tag)

    with store.session() as session:
        contact_ids = contact_store.ensure(session, emails, now)
        first = queueing.insert_messages(session, [row(email, f"cart-{email}", "a") for email in emails[:3]])
    # c2's cart again (another daemon had it first), three new, and c5's twice (the first counts)
    again = [row(email, f"cart-{email}", "b") for email in emails[2:]] + [
        row(emails[5], "cart-c5@example.com", "c")
    ]
    with store.session() as session:
        second = queueing.insert_messages(session, again)
    with store.session() as session:
        stored = {
            message.id: (message.contact_id, message.occurrence, message.message_id)
            for message in session.execute(select(Message)).scalars()
        }
    store.dispose()

    assert len(first) == 3 and len(second) == 3
    assert set(second) == {(contact_ids[email], f"cart-{email}") for email in emails[3:]}
    for tag, ids in (("a", first), ("b", second)):
        for (contact_id, occurrence), message_id in ids.items():
            assert stored[message_id] == (contact_id, occurrence, f"<{occurrence}.{tag}@shop.example>")
    assert len(stored) == 6


def test_a_chunks_bodies_and_history_go_in_and_a_value_too_long_is_refused(database_url: str) -> None:
    """What a tick writes for a chunk: bodies (packed or not), history lines, and a value that
    does not fit its column refused as the INSERT refuses it, never cut short."""
    store = Store(database_url)
    store.create_schema()
    now = utc("2026-11-20 12:00")
    with store.session() as session:
        contact_id = contact_store.ensure(session, ["lan@example.com"], now)["lan@example.com"]
        rows = [_queued(contact_id, f"cart-{n}", now, tag="a") for n in range(2)]
        [first, second] = queueing.insert_messages(session, rows).values()
        html = '<p>Giỏ hàng "của" bạn \\ vẫn đang chờ</p>' * 50
        bodies = [(first, pack("Chào Lan"), pack(html)), (second, "text", "<p>x</p>")]
        queueing.insert_contents(session, bodies)
        lines = [(first, "queued", "queued by rule x"), (second, "queued", "y")]
        queueing.record_history(session, lines, now)
    with store.session() as session:
        contents = [message_store.content(session, message_id) for message_id in (first, second)]
        reasons = message_store.last_reasons(session, [first, second])
    long_variant = {**_queued(contact_id, "cart-9", now, tag="a"), "variant": "v" * 41}
    refused = store.engine.dialect.name == "postgresql"  # SQLite keeps any length
    with store.session() as session, pytest.raises(Exception, match="too long") if refused else nullcontext():
        queueing.insert_messages(session, [long_variant])
    store.dispose()

    assert [(c.text, c.html) for c in contents] == [("Chào Lan", html), ("text", "<p>x</p>")]
    assert reasons == {first: "queued by rule x", second: "y"}


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("2026-11-20 05:00:00.000000", datetime(2026, 11, 20, 5, tzinfo=UTC)),
        ("2026-11-20 05:00:00.250000", datetime(2026, 11, 20, 5, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-20 05:00:00", datetime(2026, 11, 20, 5, tzinfo=UTC)),  # by hand, in SQL
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),  # a date alone
    ],
)
def test_on_sqlite_stored_times_read_back_aware_in_utc(stored: str, read: datetime) -> None:
    times = Table("times", MetaData(), Column("at", UTCDateTime()))
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        times.create(connection)
        connection.exec_driver_sql("INSERT INTO times VALUES (?), (NULL)", (stored,))
        found = connection.execute(select(times.c.at)).scalars().all()
    engine.dispose()

    assert found == [read, None]
    assert found[0].tzinfo is UTC


def test_times_go_in_as_their_utc_instant_and_a_naive_time_is_refused(database_url: str) -> None:
    times = Table("times", MetaData(), Column("at", UTCDateTime()))
    engine = create_engine(database_url)
    in_hanoi = datetime(2026, 11, 20, 12, tzinfo=timezone(timedelta(hours=7)))
    try:
        with engine.begin() as connection:
            times.create(connection)
            rows = [{"at": in_hanoi}, {"at": utc("2026-11-20 05:00")}, {"at": None}]
            connection.execute(times.insert(), rows)
            found = connection.execute(select(times.c.at)).scalars().all()
            stored = connection.exec_driver_sql("SELECT CAST(at AS VARCHAR(26)) FROM times").scalars().all()
        with pytest.raises(Exception, match="naive datetime"), engine.begin() as connection:
            connection.execute(times.insert(), [{"at": datetime(2026, 11, 20, 5)}])
    finally:
        engine.dispose()

    assert found == [utc("2026-11-20 05:00"), utc("2026-11-20 05:00"), None]
    assert all(at.tzinfo is UTC for at in found[:2])
    assert [text[:19] if text else text for text in stored] == ["2026-11-20 05:00:00"] * 2 + [None]


def test_a_failed_statement_names_no_value_it_was_given(database_url: str) -> None:
    """A database error reaches the log and the terminal with its SQL, never with the values
    bound to it: those are addresses, names and event properties (see operations.md)."""
    store = Store(database_url)
    store.create_schema()
    now = utc("2026-11-20 12:00")
    with store.session() as session:
        contact_id = contact_store.ensure(session, ["lan@example.com"], now)["lan@example.com"]
    row = _queued(contact_id, "cart-1", now, email="lan@example.com", tag="a")
    statement = table(Message).insert()
    with store.session() as session:
        session.execute(statement, [row])
        with pytest.raises(IntegrityError) as raised:
            session.execute(statement, [row])  # the same dedupe key again
    store.dispose()

    assert "INSERT INTO message" in str(raised.value)
    assert "lan@example.com" not in str(raised.value)


def test_on_postgresql_a_pooled_connection_the_server_closed_is_replaced(database_url: str) -> None:
    """The server may close an idle pooled connection (idle_session_timeout, a restart, a
    firewall): the next statement gets a new one instead of failing on it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to close a connection")
    store = Store(database_url)
    store.create_schema()
    with store.session() as session:
        before = session.execute(select(func.pg_backend_pid())).scalar_one()
    with create_engine(database_url).connect() as admin:
        admin.execute(select(func.pg_terminate_backend(before)))
    with store.session() as session:
        after = session.execute(select(func.pg_backend_pid())).scalar_one()
    store.dispose()

    assert after != before
