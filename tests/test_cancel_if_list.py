"""`cancel_if` with a list of events: any one of them stops the message, when it comes before
the tick (nothing is queued) or after queueing (the message is cancelled, its history naming
the event); on a date trigger each entry counts from its own `within` before the date."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import all_messages, history_of, utc, write_note_template

ALL_STAGES = "[awareness, consideration, conversion, retention, loyalty]"

BROWSE_RULE = f"""\
id: browse_reminder
stages: {ALL_STAGES}
trigger:
  event: product_viewed
  delay: 1h
  cancel_if: [{{event: cart_updated}}, {{event: order_placed}}]
send: {{template: note}}
"""

# Due a day before renews_at. A renewal in the 30 days before the date stops it, a
# cancelled plan only in the 3 days before.
RENEWAL_RULE = f"""\
id: renewal_nudge
stages: {ALL_STAGES}
trigger:
  date: contact.renews_at
  before: 1d
  cancel_if:
    - {{event: subscription_renewed, within: 30d}}
    - {{event: plan_cancelled, within: 3d}}
send: {{template: note}}
"""


@pytest.fixture(autouse=True)
def list_rules(project_dir: Path) -> None:
    (project_dir / "rules" / "browse_reminder.yaml").write_text(BROWSE_RULE, encoding="utf-8")
    (project_dir / "rules" / "renewal_nudge.yaml").write_text(RENEWAL_RULE, encoding="utf-8")
    write_note_template(project_dir)


@pytest.fixture
def lan(make_contact) -> str:
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")  # UTC+7; quiet 14:00–01:00 UTC
    return "lan@example.com"


def of_rule(store, rule_id: str) -> list:
    return [message for message in all_messages(store) if message.rule_id == rule_id]


CANCELLING = {
    "cart_updated": {"cart_id": "c9", "total": 1, "currency": "VND"},
    "order_placed": {"order_id": "A-9", "total": 1, "currency": "VND"},
}


@pytest.mark.parametrize("kind", list(CANCELLING))
def test_any_event_of_the_list_before_the_tick_keeps_it_from_being_queued(lan, make_event, tick, store, kind):
    make_event("product_viewed", utc("2026-11-20 02:00"), id="view-1")
    make_event(kind, utc("2026-11-20 02:30"), id="stop-1", **CANCELLING[kind])

    tick(utc("2026-11-20 03:00"))

    assert of_rule(store, "browse_reminder") == []


def test_without_any_of_them_it_is_sent(lan, make_event, tick, store):
    make_event("order_placed", utc("2026-11-20 01:00"), id="ord-0", **CANCELLING["order_placed"])  # before
    make_event("product_viewed", utc("2026-11-20 02:00"), id="view-1")

    tick(utc("2026-11-20 03:00"))

    [message] = of_rule(store, "browse_reminder")
    assert message.status == "sent"


@pytest.mark.parametrize("kind", list(CANCELLING))
def test_any_event_of_the_list_after_queueing_cancels_it_and_is_named(lan, make_event, tick, store, kind):
    make_event("product_viewed", utc("2026-11-20 13:30"), id="view-1")
    tick(utc("2026-11-20 14:30"))  # 21:30 in Saigon: queued until 08:00 (01:00 UTC)
    [queued] = of_rule(store, "browse_reminder")
    assert queued.status == "queued"
    make_event(kind, utc("2026-11-20 15:00"), id="stop-1", **CANCELLING[kind])

    tick(utc("2026-11-21 01:00"))

    [message] = of_rule(store, "browse_reminder")
    assert message.status == "cancelled"
    last = history_of(store, message.id)[-1]
    assert last.status == "cancelled" and kind in last.reason and "stop-1" in last.reason


@pytest.fixture
def renews(make_contact):
    def make(email: str, at: str) -> str:
        make_contact(email, timezone="Asia/Ho_Chi_Minh", renews_at=at)
        return email

    return make


@pytest.mark.parametrize(
    ("kind", "at", "cancelled"),
    [
        ("subscription_renewed", "2026-11-10 03:00", True),  # 17 days before the date: within 30d
        ("subscription_renewed", "2026-10-20 03:00", False),  # 38 days before: outside 30d
        ("plan_cancelled", "2026-11-25 03:00", True),  # 2 days before: within 3d
        ("plan_cancelled", "2026-11-20 03:00", False),  # 7 days before: outside 3d
    ],
)
def test_each_entry_of_a_date_triggers_list_has_its_own_window(
    renews, make_event, tick, store, kind, at, cancelled
):
    email = renews("lan@example.com", "2026-11-27T03:00:00+00:00")
    make_event(kind, utc(at), email=email, id="stop-1")

    tick(utc("2026-11-26 03:00"))  # due: a day before the date

    assert [m.status for m in of_rule(store, "renewal_nudge")] == ([] if cancelled else ["sent"])


def test_an_entry_of_a_date_triggers_list_cancels_a_queued_message(renews, make_event, tick, store):
    email = renews("lan@example.com", "2026-11-27T15:00:00+00:00")
    tick(utc("2026-11-26 15:00"))  # 22:00 in Saigon: queued until 08:00
    [queued] = of_rule(store, "renewal_nudge")
    assert queued.status == "queued"
    make_event("plan_cancelled", utc("2026-11-26 16:00"), email=email, id="stop-1")

    tick(utc("2026-11-27 01:00"))

    [message] = of_rule(store, "renewal_nudge")
    assert message.status == "cancelled"
    assert "plan_cancelled" in history_of(store, message.id)[-1].reason
