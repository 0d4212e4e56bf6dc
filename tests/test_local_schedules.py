"""Schedules in each contact's own time zone (`timezone: contact`): a weekly Monday 09:00
reaches every contact at 09:00 on their own Monday, once, also across the daylight saving
changes of Europe and America. On both stores."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from automator.schedules import cron
from automator.store import Store
from tests.conftest import all_messages, utc

WEEKLY = """\
id: monday_tips
stages: [awareness, consideration, conversion, retention, loyalty]
trigger: {schedule: "0 9 * * 1", timezone: contact}
send: {template: monday_tips}
"""
ZONES = ("Europe/London", "America/New_York", "Asia/Ho_Chi_Minh")
PROJECT_ZONE = "Asia/Ho_Chi_Minh"  # automator.toml's


@pytest.fixture(autouse=True)
def weekly_rule(project_dir: Path) -> None:
    """The weekly rule, written before the project loads."""
    (project_dir / "rules" / "monday_tips.yaml").write_text(WEEKLY, encoding="utf-8")
    folder = project_dir / "email_templates" / "monday_tips"
    folder.mkdir()
    (folder / "subject.txt").write_text("Monday tips from Lotus Shop", encoding="utf-8")
    (folder / "body.txt").write_text("Hi {{ contact.first_name }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "body.html").write_text("<p>Hi {{ contact.first_name }}</p>", encoding="utf-8")


def hourly(start: datetime, end: datetime) -> list[datetime]:
    return [start + timedelta(hours=hours) for hours in range(int((end - start) / timedelta(hours=1)) + 1)]


def local_firings(store: Store) -> dict[str, Counter[datetime]]:
    """Per contact's email, how many messages each local firing time got."""
    with store.session() as session:
        contacts = {row.id: row for row in session.execute(text("SELECT id, email, timezone FROM contact"))}
    found: dict[str, Counter[datetime]] = {}
    for message in all_messages(store):
        contact = contacts[message.contact_id]
        zone = ZoneInfo(contact.timezone or PROJECT_ZONE)
        local = message.occurred_at.astimezone(zone).replace(tzinfo=None)
        found.setdefault(contact.email, Counter())[local] += 1
    return found


def mondays_at_nine(first: date, weeks: int) -> Counter[datetime]:
    return Counter(
        datetime.combine(first + timedelta(weeks=n), datetime.min.time()).replace(hour=9)
        for n in range(weeks)
    )


def contacts_in_three_zones(make_contact) -> None:
    for zone in ZONES:
        make_contact(f"{zone.split('/')[1].lower()}@example.com", first_name="Lan", timezone=zone)


@pytest.mark.parametrize(
    ("start", "first_monday"),
    [
        # America moves on 14 March 2027, Europe on 28 March.
        (utc("2027-03-07 12:00"), date(2027, 3, 8)),
        # Europe moves back on 31 October 2027, America on 7 November.
        (utc("2027-10-24 12:00"), date(2027, 10, 25)),
    ],
    ids=["spring", "autumn"],
)
def test_a_weekly_local_schedule_fires_once_each_monday_at_nine_local_across_dst(
    make_contact, tick, store, start, first_monday
):
    contacts_in_three_zones(make_contact)

    for moment in hourly(start, start + timedelta(days=22, hours=6)):  # to the fourth Monday evening
        tick(moment)

    expected = mondays_at_nine(first_monday, 4)
    assert local_firings(store) == {
        "london@example.com": expected,
        "new_york@example.com": expected,
        "ho_chi_minh@example.com": expected,
    }
    assert {message.status for message in all_messages(store)} == {"sent"}


def test_each_contact_is_messaged_when_it_is_nine_where_they_are(make_contact, tick, store):
    contacts_in_three_zones(make_contact)
    make_contact("nozone@example.com", first_name="Bo")  # the project's zone

    tick(utc("2027-01-11 02:00"))  # 09:00 in Ho Chi Minh City
    assert sorted(local_firings(store)) == ["ho_chi_minh@example.com", "nozone@example.com"]
    tick(utc("2027-01-11 09:00"))  # 09:00 in London
    tick(utc("2027-01-11 14:00"))  # 09:00 in New York
    tick(utc("2027-01-11 15:00"))

    when = {message.contact_id: message.occurred_at for message in all_messages(store)}
    assert sorted(when.values()) == [
        utc("2027-01-11 02:00"),
        utc("2027-01-11 02:00"),
        utc("2027-01-11 09:00"),
        utc("2027-01-11 14:00"),
    ]


def test_a_contact_with_an_unknown_zone_gets_it_in_the_project_zone(make_contact, tick, store):
    contact_id = make_contact("mars@example.com", first_name="Bo")
    with store.transaction() as session:
        session.execute(
            text("UPDATE contact SET timezone = 'Mars/Olympus' WHERE id = :id"), {"id": contact_id}
        )

    tick(utc("2027-01-11 01:00"))
    assert all_messages(store) == []
    tick(utc("2027-01-11 02:00"))  # 09:00 in Ho Chi Minh City

    [message] = all_messages(store)
    assert (message.occurrence, message.occurred_at) == (
        "schedule@2027-01-11T02:00:00+00:00",
        utc("2027-01-11 02:00"),
    )


def test_a_contact_who_moves_into_a_zone_after_it_fired_still_gets_it_there(make_contact, tick, store):
    contacts_in_three_zones(make_contact)
    make_contact("moving@example.com", first_name="Bo", timezone="America/New_York")
    tick(utc("2027-01-11 09:00"))  # London's firing seen, for the contacts there then
    make_contact("moving@example.com", timezone="Europe/Dublin")  # the same hour as London's

    tick(utc("2027-01-11 10:00"))
    tick(utc("2027-01-11 14:00"))  # New York's 09:00: no longer theirs

    once = Counter({datetime(2027, 1, 11, 9): 1})
    # Ho Chi Minh City's 09:00 (02:00 UTC) was past the default lateness (6h) at the first tick.
    assert local_firings(store) == {
        "london@example.com": once,
        "moving@example.com": once,
        "new_york@example.com": once,
    }


@pytest.mark.parametrize(
    ("weekday", "days"),
    [
        ("1", ["Mon"]),
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
        ("mon,sat", ["Mon", "Sat"]),
    ],
)
def test_crontab_weekday_numbers_count_from_sunday_as_in_cron(weekday, days):
    """APScheduler 3 counts from Monday = 0; a rule's crontab line means what cron means."""
    trigger = cron(f"0 9 * * {weekday}", ZoneInfo("UTC"))
    week = [datetime(2027, 1, 3, tzinfo=UTC) + timedelta(days=n) for n in range(7)]  # Sunday to Saturday
    fired = [
        day.strftime("%a") for day in week if trigger.get_next_fire_time(None, day) == day.replace(hour=9)
    ]
    assert fired == days


def test_a_schedule_in_the_hour_the_clocks_go_back_fires_once_as_in_cron() -> None:
    from automator.model import ScheduleTrigger
    from automator.schedules import last_fire

    nightly = ScheduleTrigger.model_validate({"schedule": "30 1 * * *", "timezone": "contact"})
    london = ZoneInfo("Europe/London")  # 02:00 BST on 25 October 2026 is 01:00 GMT: 01:30 comes twice

    ticks = [utc("2026-10-24 22:00") + timedelta(minutes=15 * n) for n in range(25)]
    fired = {last_fire(nightly, london, now, now - timedelta(hours=1)) for now in ticks} - {None}

    assert fired == {utc("2026-10-25 00:30")}  # 01:30 BST, and not 01:30 GMT an hour later
    every_20 = ScheduleTrigger.model_validate({"schedule": "*/20 * * * *", "timezone": "contact"})
    assert last_fire(every_20, london, utc("2026-10-25 01:45"), utc("2026-10-24 22:00")) == utc(
        "2026-10-25 00:40"
    )  # 01:40 BST; 01:00, 01:20 and 01:40 GMT repeat it
    assert last_fire(every_20, london, utc("2026-10-25 02:05"), utc("2026-10-25 01:00")) == utc(
        "2026-10-25 02:00"
    )  # 02:00 GMT comes once


def test_a_long_look_back_over_an_autumn_night_still_finds_the_latest_firing() -> None:
    from automator.model import ScheduleTrigger
    from automator.schedules import last_fire

    nightly = ScheduleTrigger.model_validate({"schedule": "30 1 * * *", "timezone": "contact"})
    now = utc("2026-10-20 03:00")

    # `explain` looks back 400 days, over the night of 26 October 2025.
    assert last_fire(nightly, ZoneInfo("Europe/London"), now, now - timedelta(days=400)) == utc(
        "2026-10-20 00:30"
    )
