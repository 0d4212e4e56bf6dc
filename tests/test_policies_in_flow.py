"""Send-time policies in real flows: quiet hours in the contact's own time zone, the frequency
cap across rules with priorities, and maximum lateness."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from tests.conftest import all_messages, cart, history_of, utc

ORDER = {"order_id": "A-1001", "total": 1_250_000, "currency": "VND"}
HO_CHI_MINH = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7: quiet from 14:00 to 01:00 UTC
NEW_YORK = ZoneInfo("America/New_York")  # UTC-5 in November: quiet from 02:00 to 13:00 UTC


def test_quiet_hours_in_ho_chi_minh_city_hold_the_message_until_8_local(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 14:30"), id="evt-1", **cart())  # 21:30 local

    tick(utc("2026-11-20 15:30"))  # due at 22:30 local
    tick(utc("2026-11-21 00:59"))  # 07:59 local
    assert transport.sent == []
    assert [m.status for m in all_messages(store)] == ["queued"]
    tick(utc("2026-11-21 01:00"))

    [message] = all_messages(store)
    assert message.status == "sent"
    assert message.sent_at is not None and message.sent_at.astimezone(HO_CHI_MINH).hour == 8


def test_quiet_hours_in_new_york_hold_the_message_until_8_local(
    make_contact, make_event, store, tick, transport
):
    make_contact("bob@example.com", timezone="America/New_York")
    make_event("cart_updated", utc("2026-11-20 02:00"), email="bob@example.com", id="evt-1", **cart())

    tick(utc("2026-11-20 03:00"))  # due at 22:00 in New York
    tick(utc("2026-11-20 12:59"))  # 07:59 in New York (and 19:59 in Ho Chi Minh City)
    assert transport.sent == []
    tick(utc("2026-11-20 13:00"))

    [message] = all_messages(store)
    assert message.status == "sent"
    assert message.sent_at is not None and message.sent_at.astimezone(NEW_YORK).hour == 8


def test_new_york_quiet_hours_end_at_8_local_on_the_day_daylight_saving_starts(
    make_contact, make_event, store, tick, transport
):
    make_contact("bob@example.com", timezone="America/New_York")
    # 2026-03-08: clocks go from 02:00 EST to 03:00 EDT, so 08:00 local is 12:00 UTC, not 13:00.
    make_event("cart_updated", utc("2026-03-08 05:00"), email="bob@example.com", id="evt-1", **cart())

    tick(utc("2026-03-08 06:00"))  # 01:00 EST

    [message] = all_messages(store)
    assert message.send_at == utc("2026-03-08 12:00")
    assert message.send_at.astimezone(NEW_YORK).hour == 8


def test_new_york_contact_is_not_held_by_the_projects_quiet_hours(make_contact, make_event, tick, transport):
    make_contact("bob@example.com", timezone="America/New_York")
    make_event("cart_updated", utc("2026-11-20 15:00"), email="bob@example.com", id="evt-1", **cart())

    tick(utc("2026-11-20 16:00"))  # 11:00 in New York, 23:00 in Ho Chi Minh City

    assert len(transport.sent) == 1


def test_a_message_held_by_quiet_hours_goes_at_the_first_tick_after_8_local(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 14:30"), id="evt-1", **cart())
    tick(utc("2026-11-20 15:30"))

    tick(utc("2026-11-21 02:45"))  # the daemon was down at 08:00; 09:45 local

    [message] = all_messages(store)
    assert (message.status, message.sent_at) == ("sent", utc("2026-11-21 02:45"))


def test_contact_without_a_time_zone_gets_the_projects_quiet_hours(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")  # no time zone: automator.toml says Asia/Ho_Chi_Minh
    make_event("cart_updated", utc("2026-11-20 14:30"), id="evt-1", **cart())

    tick(utc("2026-11-20 15:30"))  # outside quiet hours in UTC, 22:30 in Ho Chi Minh City
    assert transport.sent == []
    tick(utc("2026-11-21 01:00"))

    assert len(transport.sent) == 1


def cap_setup(make_contact, make_event) -> None:
    """Three messages due together for one contact: two carts (priority 20) and a trial end (30)."""
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-23T04:20:00Z")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart("c1"))
    make_event("cart_updated", utc("2026-11-20 03:10"), id="evt-2", **cart("c2"))


def test_frequency_cap_makes_the_lowest_priority_message_wait(
    make_contact, make_event, store, tick, transport
):
    cap_setup(make_contact, make_event)

    tick(utc("2026-11-20 04:30"))

    by_occurrence = {m.occurrence: m for m in all_messages(store)}
    assert [email["X-Automator-Rule"] for email in transport.sent] == ["trial_ending", "abandoned_cart"]
    assert by_occurrence["evt-1"].status == "sent"
    waiting = by_occurrence["evt-2"]
    assert (waiting.status, waiting.send_at) == ("queued", utc("2026-11-21 04:30"))
    assert "frequency cap" in history_of(store, waiting.id)[-1].reason


def test_capped_message_goes_once_the_window_allows(make_contact, make_event, store, tick, transport):
    cap_setup(make_contact, make_event)
    tick(utc("2026-11-20 04:30"))

    tick(utc("2026-11-21 04:29"))
    assert len(transport.sent) == 2
    tick(utc("2026-11-21 04:30"))

    assert len(transport.sent) == 3
    assert all(m.status == "sent" for m in all_messages(store))


def test_first_tick_on_a_store_with_week_old_events_sends_nothing_stale(
    make_contact, make_event, store, tick, transport
):
    now = utc("2026-11-20 04:00")
    week_ago = now - timedelta(days=7)
    make_contact("lan@example.com")
    make_event("cart_updated", week_ago, email="lan@example.com", id="evt-1", **cart())
    make_contact("minh@example.com")
    make_event("order_placed", week_ago, email="minh@example.com", id="ord-1", **ORDER)
    make_contact("hoa@example.com", trial_ends_at=(week_ago + timedelta(days=3)).isoformat())
    make_contact("an@example.com", stage="retention", renews_at=(week_ago + timedelta(days=30)).isoformat())

    report = tick(now)

    assert sum(rule.evaluated for rule in report.rules.values()) == 0
    assert all_messages(store) == []
    assert transport.sent == []


def test_restart_after_an_outage_sends_only_what_is_within_max_lateness(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    make_contact("minh@example.com")
    tick(utc("2026-11-20 04:00"))  # the last tick before the outage
    make_event("cart_updated", utc("2026-11-21 04:00"), email="lan@example.com", id="evt-old", **cart("c1"))
    make_event("cart_updated", utc("2026-11-23 02:00"), email="minh@example.com", id="evt-new", **cart("c2"))

    tick(utc("2026-11-23 04:00"))  # back after three days

    assert [m.occurrence for m in all_messages(store)] == ["evt-new"]
    assert [email["To"] for email in transport.sent] == ["minh@example.com"]


def test_queued_message_whose_expiry_passed_during_an_outage_is_cancelled_too_late(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 14:30"), id="evt-1", **cart())
    tick(utc("2026-11-20 15:30"))  # queued until 08:00 local

    tick(utc("2026-11-27 03:00"))  # back after a week

    [message] = all_messages(store)
    assert message.status == "cancelled"
    assert "too late" in history_of(store, message.id)[-1].reason
    assert transport.sent == []
