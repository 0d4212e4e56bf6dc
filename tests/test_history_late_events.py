"""An event rule whose `history` condition was false when its occurrence came due, made true
by an event that arrives later but is dated earlier (an import of last week's orders): the
next tick looks again at that contact's due occurrences, within max lateness, on both stores.
Without new events of the history's type, nothing is looked at again."""

from __future__ import annotations

from pathlib import Path

import pytest

from automator.store import candidates
from tests.conftest import all_messages, lookup_plan, utc, write_note_template

REPEAT_BUYERS = """\
id: repeat_buyers
stages: [retention, loyalty]
trigger: {event: order_placed, once_per: order_id, delay: 1h}
when:
  - history: {event: order_placed, within: 90d, count: {gte: 2}}
send: {template: note}
max_lateness: 1d
"""
ORDER_AT = utc("2026-11-20 03:00")  # its message is due at 04:00


@pytest.fixture(autouse=True)
def repeat_buyers_rule(project_dir: Path) -> None:
    (project_dir / "rules" / "repeat_buyers.yaml").write_text(REPEAT_BUYERS, encoding="utf-8")
    write_note_template(project_dir)


def order(make_event, at, number: int) -> None:
    make_event("order_placed", at, id=f"ord-{number}", order_id=f"A-{number}", total=1, currency="VND")


def repeat_buyer_messages(store) -> list[str]:
    return [message.occurrence for message in all_messages(store) if message.rule_id == "repeat_buyers"]


def test_a_late_event_that_makes_history_true_brings_the_occurrence_back(
    make_contact, make_event, tick, store
):
    make_contact("lan@example.com", stage="retention")
    order(make_event, ORDER_AT, 1)
    tick(utc("2026-11-20 05:00"))
    assert repeat_buyer_messages(store) == []  # one order in 90 days: not a repeat buyer yet

    order(make_event, utc("2026-11-01 10:00"), 2)  # last month's order, imported now
    tick(utc("2026-11-20 06:00"))

    assert repeat_buyer_messages(store) == ["A-1"]


def test_an_event_of_another_type_brings_nothing_back(make_contact, make_event, tick, store):
    make_contact("lan@example.com", stage="retention")
    order(make_event, ORDER_AT, 1)
    tick(utc("2026-11-20 05:00"))
    make_event("page_viewed", utc("2026-11-20 05:30"), id="view-1")

    tick(utc("2026-11-20 06:00"))

    assert repeat_buyer_messages(store) == []


def test_after_max_lateness_a_late_event_brings_nothing_back(make_contact, make_event, tick, store):
    make_contact("lan@example.com", stage="retention")
    order(make_event, ORDER_AT, 1)
    tick(utc("2026-11-20 05:00"))
    order(make_event, utc("2026-11-01 10:00"), 2)

    tick(utc("2026-11-21 06:00"))  # due at 04:00 the day before: more than a day late

    assert repeat_buyer_messages(store) == []


def test_a_contact_both_changed_and_with_a_late_event_is_looked_at_once(
    make_contact, make_event, tick, store
):
    make_contact("lan@example.com", stage="consideration")  # not a stage of the rule yet
    order(make_event, ORDER_AT, 1)
    tick(utc("2026-11-20 05:00"))
    make_contact("lan@example.com", stage="retention")
    order(make_event, utc("2026-11-01 10:00"), 2)

    tick(utc("2026-11-20 06:00"))

    assert repeat_buyer_messages(store) == ["A-1"]


def test_the_late_events_are_read_from_the_newest_ids(project, store, database_url) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the plan of SQLite, which has no statistics to go by")
    [rule] = [rule for rule in project.rules if rule.id == "repeat_buyers"]
    steps = lookup_plan(store, rule, ORDER_AT, candidates.Watermark(until=ORDER_AT, seq=10, changes=1))

    # One window for the changed contacts and those with new orders (two UNION ALLs), and
    # the new orders found by their ids, not among all orders by type.
    assert steps.count("UNION ALL") == 2, steps
    assert "SEARCH history_new USING INTEGER PRIMARY KEY (rowid>?)" in steps, steps
