"""A `once_per` value too long for the message table's unique index (PostgreSQL refuses an
entry of over 2,704 bytes): its event is an occurrence of its own, on both stores, and the
rest of the tick's messages are queued. It once failed on PostgreSQL at every tick."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from automator.explain import SENT, explain
from automator.store.candidates import ONCE_PER_LENGTH
from tests.conftest import all_messages, utc, write_note_template

ORDERS = """\
id: orders
stages: [retention, loyalty]
trigger: {event: order_placed, once_per: order_id, delay: 1h}
send: {template: note}
max_lateness: 1d
"""


def scrambled(length: int) -> str:
    """Letters that compress badly, so that the store keeps them at about their length."""
    return "".join(chr(ord("a") + (n * 7919) % 26) for n in range(length))


@pytest.fixture(autouse=True)
def orders_rule(project_dir: Path) -> None:
    (project_dir / "rules" / "orders.yaml").write_text(ORDERS, encoding="utf-8")
    write_note_template(project_dir)


def test_a_once_per_value_too_long_to_index_makes_its_event_its_own_occurrence(
    make_contact, make_event, tick, store
):
    make_contact("lan@example.com", stage="retention")
    make_contact("mai@example.com", stage="retention")
    long_value = scrambled(3000)
    at = utc("2026-11-20 03:00")
    make_event("order_placed", at, email="lan@example.com", id="o1", order_id=long_value)
    make_event("order_placed", at, email="lan@example.com", id="o2", order_id="x" * ONCE_PER_LENGTH)
    make_event("order_placed", at, email="mai@example.com", id="o3", order_id="A-3")

    report = tick(utc("2026-11-20 05:00"))

    assert report.rules["orders"].error is None
    sent = sorted((message.email, message.occurrence) for message in all_messages(store))
    assert sent == [
        ("lan@example.com", "o1"),
        ("lan@example.com", "x" * ONCE_PER_LENGTH),
        ("mai@example.com", "A-3"),
    ]


def test_a_message_stored_under_a_long_value_still_counts_for_its_event(
    make_contact, make_event, tick, store, project
):
    """An older release queued a long value's message under the value itself (SQLite any,
    PostgreSQL one short enough to index). The event is now its own occurrence, and that
    message must keep it from being queued a second time, in the tick and in `explain`."""
    make_contact("lan@example.com", stage="retention")
    value = scrambled(ONCE_PER_LENGTH + 100)
    make_event("order_placed", utc("2026-11-20 03:00"), email="lan@example.com", id="o1", order_id=value)
    tick(utc("2026-11-20 05:00"))
    with store.engine.begin() as connection:  # as the older release stored it
        connection.execute(text("UPDATE message SET occurrence = :value"), {"value": value})
    # Back into the rule's stages from outside them: the next tick looks at her events again.
    make_contact("lan@example.com", stage="awareness", _now=utc("2026-11-20 05:20"))
    make_contact("lan@example.com", stage="retention", _now=utc("2026-11-20 05:30"))

    report = tick(utc("2026-11-20 06:00"))
    [orders] = [rule for rule in project.rules if rule.id == "orders"]
    explained = explain(store, project.settings, orders, "lan@example.com", utc("2026-11-20 06:00"))

    assert report.rules["orders"].error is None
    [message] = all_messages(store)
    assert (message.email, message.occurrence) == ("lan@example.com", value)
    assert explained.verdict == SENT
    assert explained.reason.startswith(f"message {message.id} ")
