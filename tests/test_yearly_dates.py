"""Yearly date triggers: a birthday comes every year on its month and day, in the contact's
own time zone, once a year however often the tick runs; 29 February falls on 28 February
in other years. On both stores."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, event, text

from automator.store import Store, candidates, schema
from automator.store.candidates import Watermark
from tests.conftest import all_messages, history_of, text_of, utc

BIRTHDAY = """\
id: birthday
stages: [awareness, consideration, conversion, retention, loyalty]
trigger: {{date: contact.birthday, yearly: true{offset}}}
send: {{template: birthday}}
"""
NO_MARK = Watermark(until=utc("2000-01-01 00:00"), seq=0)
# The project's zone (automator.toml) is Asia/Ho_Chi_Minh, UTC+7: midnight there is 17:00 UTC
# the day before.


def birthday_project(project_dir: Path, offset: str = "") -> None:
    (project_dir / "rules" / "birthday.yaml").write_text(BIRTHDAY.format(offset=offset), encoding="utf-8")
    folder = project_dir / "email_templates" / "birthday"
    folder.mkdir(exist_ok=True)
    (folder / "subject.txt").write_text("Happy birthday from Lotus Shop", encoding="utf-8")
    (folder / "body.txt").write_text(
        "Hi {{ contact.first_name }}, happy birthday on {{ trigger.at|date }}!\n{{ unsubscribe_url }}\n",
        encoding="utf-8",
    )
    (folder / "body.html").write_text("<p>Happy birthday, {{ contact.first_name }}</p>", encoding="utf-8")


@pytest.fixture
def offset() -> str:
    """The birthday rule's before/after; a test parametrizes it to give one."""
    return ""


@pytest.fixture(autouse=True)
def birthday_rule(project_dir: Path, offset: str) -> None:
    """The birthday rule, written before the project loads."""
    birthday_project(project_dir, offset)


def sent_occurrences(store: Store) -> list[tuple[str, str, datetime]]:
    """(email, occurrence, occurred_at) of every message, oldest first."""
    found = [(m.contact_id, m.occurrence, m.occurred_at) for m in all_messages(store)]
    with store.session() as session:
        emails = dict(session.execute(text("SELECT id, email FROM contact")).all())
    return sorted(((emails[c], o, at) for c, o, at in found), key=lambda item: (item[2], item[0]))


def ticks(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    moments = []
    while start <= end:
        moments.append(start)
        start += every
    return moments


def test_a_birthday_is_sent_once_each_year_on_its_day(make_contact, tick, store):
    make_contact("lan@example.com", first_name="Lan", birthday="1990-05-17")

    tick(utc("2026-05-16 16:59"))  # 23:59 on 16 May in Ho Chi Minh City
    assert all_messages(store) == []
    for moment in [utc("2026-05-16 17:00"), utc("2026-05-17 01:00"), utc("2026-05-18 10:00")]:
        tick(moment)
    for moment in [utc("2026-06-01 09:00"), utc("2026-11-20 09:00"), utc("2027-05-15 17:00")]:
        tick(moment)  # other days: nothing
    assert sent_occurrences(store) == [("lan@example.com", "birthday@2026", utc("2026-05-16 17:00"))]

    tick(utc("2027-05-16 18:00"))
    tick(utc("2027-05-17 03:00"))

    assert sent_occurrences(store) == [
        ("lan@example.com", "birthday@2026", utc("2026-05-16 17:00")),
        ("lan@example.com", "birthday@2027", utc("2027-05-16 17:00")),
    ]


def test_a_birthday_message_goes_out_dated_this_year(make_contact, tick, store, transport):
    make_contact("lan@example.com", first_name="Lan", birthday="1990-05-17")

    tick(utc("2026-05-16 17:00"))  # midnight local: it waits for the end of quiet hours
    tick(utc("2026-05-17 01:00"))  # 08:00 local

    [message] = all_messages(store)
    assert message.status == "sent", [h.reason for h in history_of(store, message.id)]
    [email] = transport.sent
    assert "2026" in text_of(email) and "1990" not in text_of(email)


def test_a_birthday_moved_before_it_goes_out_is_cancelled(make_contact, tick, store, transport):
    make_contact("lan@example.com", birthday="1990-05-17")
    tick(utc("2026-05-16 17:00"))  # queued until 08:00 local
    make_contact("lan@example.com", birthday="1990-06-17")

    tick(utc("2026-05-17 01:00"))

    [message] = all_messages(store)
    assert message.status == "cancelled"
    assert "date changed" in history_of(store, message.id)[-1].reason
    assert transport.sent == []


def test_a_leap_day_birthday_falls_on_28_february_in_common_years(make_contact, tick, store):
    make_contact("leap@example.com", timezone="Europe/London", birthday="2000-02-29")
    make_contact("feb28@example.com", timezone="Europe/London", birthday="1999-02-28")
    make_contact("mar1@example.com", timezone="Europe/London", birthday="1999-03-01")

    for moment in ticks(utc("2027-02-25 00:00"), utc("2027-03-04 00:00"), timedelta(hours=6)):
        tick(moment)
    for moment in ticks(utc("2028-02-25 00:00"), utc("2028-03-04 00:00"), timedelta(hours=6)):
        tick(moment)

    assert sent_occurrences(store) == [
        ("feb28@example.com", "birthday@2027", utc("2027-02-28 00:00")),
        ("leap@example.com", "birthday@2027", utc("2027-02-28 00:00")),
        ("mar1@example.com", "birthday@2027", utc("2027-03-01 00:00")),
        ("feb28@example.com", "birthday@2028", utc("2028-02-28 00:00")),
        ("leap@example.com", "birthday@2028", utc("2028-02-29 00:00")),
        ("mar1@example.com", "birthday@2028", utc("2028-03-01 00:00")),
    ]


@pytest.mark.parametrize("offset", [", before: 7d"])
def test_a_birthday_with_before_7d_comes_a_week_ahead(make_contact, tick, store):
    make_contact("lan@example.com", birthday="1990-05-17")

    tick(utc("2026-05-09 16:59"))
    assert all_messages(store) == []
    tick(utc("2026-05-09 17:00"))  # midnight on 10 May local
    tick(utc("2026-05-16 17:00"))  # the day itself: sent already

    assert sent_occurrences(store) == [("lan@example.com", "birthday@2026", utc("2026-05-16 17:00"))]


@pytest.mark.parametrize("offset", [", before: 7d"])
def test_a_january_birthday_with_before_7d_comes_in_december_as_next_years(make_contact, tick, store):
    make_contact("lan@example.com", timezone="Europe/London", birthday="1990-01-03")

    tick(utc("2026-12-27 00:00"))
    tick(utc("2026-12-28 00:00"))
    tick(utc("2027-01-03 00:00"))

    assert sent_occurrences(store) == [("lan@example.com", "birthday@2027", utc("2027-01-03 00:00"))]


@pytest.mark.parametrize("offset", [", cancel_if: {event: order_placed, within: 30d}"])
def test_cancel_if_within_counts_back_from_this_years_birthday(make_contact, make_event, tick, store):
    for name in ("recent", "early", "lastyear"):
        make_contact(f"{name}@example.com", timezone="Europe/London", birthday="1990-05-17")
    make_event("order_placed", utc("2026-05-07 10:00"), email="recent@example.com", id="o1")  # 10 days before
    make_event("order_placed", utc("2026-04-07 10:00"), email="early@example.com", id="o2")  # 40 days before
    make_event("order_placed", utc("2025-05-07 10:00"), email="lastyear@example.com", id="o3")

    tick(utc("2026-05-17 00:00"))

    assert [email for email, _, _ in sent_occurrences(store)] == ["early@example.com", "lastyear@example.com"]


def test_contacts_in_far_zones_get_it_at_their_own_midnight(make_contact, tick, store):
    make_contact("tokyo@example.com", timezone="Asia/Tokyo", birthday="1985-05-17")  # UTC+9
    make_contact("kiritimati@example.com", timezone="Pacific/Kiritimati", birthday="1985-05-17")  # +14
    make_contact("honolulu@example.com", timezone="Pacific/Honolulu", birthday="1985-05-17")  # -10

    for moment in ticks(utc("2026-05-15 00:00"), utc("2026-05-19 00:00"), timedelta(hours=1)):
        tick(moment)

    assert sent_occurrences(store) == [
        ("kiritimati@example.com", "birthday@2026", utc("2026-05-16 10:00")),
        ("tokyo@example.com", "birthday@2026", utc("2026-05-16 15:00")),
        ("honolulu@example.com", "birthday@2026", utc("2026-05-17 10:00")),
    ]


def test_a_birthday_is_not_sent_for_a_day_past_max_lateness(make_contact, tick, store):
    make_contact("lan@example.com", birthday="1990-05-17")

    tick(utc("2026-05-19 18:00"))  # more than 2 days (the default lateness) after it came due

    assert all_messages(store) == []


@pytest.mark.sqlite_only
def test_the_yearly_lookup_reads_dates_through_their_month_day_index(project, store, make_contact):
    make_contact("lan@example.com", birthday="1990-05-17")
    rule = project.rule("birthday")
    executed: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        executed.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    with store.session() as session:
        found = candidates.find(session, rule, utc("2026-05-17 00:00"), NO_MARK, project.settings.zone)
        [(statement, parameters)] = [(s, p) for s, p in executed if "contact_date" in s]
        plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    event.remove(store.engine, "before_cursor_execute", record)

    assert [candidate.occurrence for candidate in found] == ["birthday@2026"]
    details = " | ".join(str(row[-1]) for row in plan)
    assert "ix_contact_date_name_month_day" in details, details


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_upgraded_database_has_the_month_day_and_zone_indexes(request, project_dir, kind):
    """The revision that adds them (the models' indexes are compared by
    tests/test_migrations.py, except an expression's, which SQLite cannot reflect)."""
    if kind == "sqlite":
        url = f"sqlite:///{project_dir / 'upgraded.db'}"
        listing = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        url = request.getfixturevalue("postgres_server").new_database(empty=True)
        listing = "SELECT indexname FROM pg_indexes"
    engine = create_engine(url)
    with engine.connect() as connection:
        command.upgrade(schema.config(connection), "head")
        connection.commit()
        names = set(connection.execute(text(listing)).scalars())
    engine.dispose()
    assert {"ix_contact_date_name_month_day", "ix_contact_timezone"} <= names


@pytest.mark.parametrize(
    ("now", "verdict", "trigger"),
    [
        # A week before this year's birthday, last year's long past: this year's is coming.
        ("2027-05-09T09:00:00Z", "not yet due", "birthday 2000-02-29"),
        ("2027-05-17T09:00:00Z", "sent", "birthday 2000-02-29"),  # the day after: the one that went
    ],
)
def test_explain_names_the_nearer_years_birthday_and_its_own_date(
    make_contact, tick, cli, now, verdict, trigger
):
    make_contact("lan@example.com", first_name="Lan", birthday="1990-05-17")
    make_contact("minh@example.com", first_name="Minh", birthday="2000-02-29")
    for year in (2026, 2027):  # Lan's birthday at midnight waits for the quiet hours to end
        tick(utc(f"{year}-05-16 17:00"))
        tick(utc(f"{year}-05-17 01:00"))

    lan = json.loads(
        cli("explain", "birthday", "--contact", "lan@example.com", "--now", now, "--json").stdout
    )
    minh = json.loads(
        cli("explain", "birthday", "--contact", "minh@example.com", "--now", now, "--json").stdout
    )

    assert lan["verdict"] == verdict
    [seen] = [check["saw"] for check in minh["checks"] if check["check"] == "trigger"]
    assert seen.startswith(trigger)  # the date as given, not as a UTC time on the day before
