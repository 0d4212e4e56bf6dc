"""The trial-ending flow: three days before `trial_ends_at`, unless the contact subscribed."""

from __future__ import annotations

from tests.conftest import all_messages, cart, history_of, text_of, utc

# Asia/Ho_Chi_Minh is UTC+7, so its quiet hours (21:00–08:00) are 14:00–01:00 UTC.


def test_trial_ending_is_sent_three_days_before_the_trial_ends(make_contact, tick, store, transport):
    make_contact("lan@example.com", trial_ends_at="2026-11-23T03:00:00Z")

    tick(utc("2026-11-20 02:59"))
    assert all_messages(store) == []
    assert transport.sent == []
    tick(utc("2026-11-20 03:00"))

    [message] = all_messages(store)
    assert (message.rule_id, message.status, message.sent_at) == (
        "trial_ending",
        "sent",
        utc("2026-11-20 03:00"),
    )


def test_a_trial_ending_in_ten_days_is_not_queued_yet(make_contact, tick, store, transport):
    make_contact("lan@example.com", trial_ends_at="2026-11-30T03:00:00Z")

    tick(utc("2026-11-20 03:00"))
    tick(utc("2026-11-21 03:00"))

    assert all_messages(store) == []
    assert transport.sent == []


def test_trial_ending_says_how_many_days_are_left(make_contact, tick, transport):
    make_contact("lan@example.com", trial_ends_at="2026-11-23T03:00:00Z")

    tick(utc("2026-11-20 03:00"))

    [email] = transport.sent
    assert email["Subject"] == "Your Lotus Shop trial ends in 3 days"
    assert "3 days" in text_of(email)


def test_vietnamese_trial_ending_says_3_days_left(make_contact, tick, transport):
    make_contact("lan@example.com", locale="vi", trial_ends_at="2026-11-23T03:00:00Z")

    tick(utc("2026-11-20 03:00"))

    [email] = transport.sent
    assert "sau 3 ngày nữa" in text_of(email)


def test_date_only_trial_end_still_says_3_days(make_contact, tick, transport):
    # Midnight in Ho Chi Minh City; due at midnight local, so it waits for 08:00.
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-23")

    tick(utc("2026-11-19 17:00"))
    tick(utc("2026-11-20 01:00"))

    [email] = transport.sent
    assert "3 days" in text_of(email)


def test_trial_ending_needs_trial_ends_at(make_contact, tick, store, transport):
    make_contact("lan@example.com", plan="trial")

    tick(utc("2026-11-20 03:00"))
    tick(utc("2026-11-21 03:00"))

    assert all_messages(store) == []
    assert transport.sent == []


def test_trial_ending_skips_a_contact_who_subscribed(make_contact, make_event, tick, store, transport):
    make_contact("lan@example.com", trial_ends_at="2026-11-23T03:00:00Z")
    make_event("subscription_started", utc("2026-11-10 09:00"), id="sub-1", plan="pro")

    tick(utc("2026-11-20 03:00"))

    assert all_messages(store) == []
    assert transport.sent == []


def test_subscription_in_the_30_days_before_trial_end_cancels_even_without_a_stage_change(
    make_contact, make_event, tick, store, transport
):
    make_contact("lan@example.com", trial_ends_at="2026-11-23T03:00:00Z")
    make_event("subscription_started", utc("2026-10-25 03:00"), id="sub-1", plan="pro")
    make_contact("lan@example.com", stage="consideration")  # the CRM still says consideration

    tick(utc("2026-11-20 03:00"))

    assert all_messages(store) == []
    assert transport.sent == []


def test_subscription_more_than_30_days_before_trial_end_does_not_count(
    make_contact, make_event, tick, transport
):
    make_contact("lan@example.com", trial_ends_at="2026-11-23T03:00:00Z")
    make_event("subscription_started", utc("2026-10-20 03:00"), id="sub-1", plan="pro")
    make_contact("lan@example.com", stage="consideration")  # a new trial after that subscription

    tick(utc("2026-11-20 03:00"))

    assert len(transport.sent) == 1


def test_trial_ending_is_cancelled_at_dispatch_by_a_later_subscription(
    make_contact, make_event, tick, store, transport
):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-23T15:00:00Z")
    tick(utc("2026-11-20 15:00"))  # 22:00 local: queued until 08:00 local
    [queued] = all_messages(store)
    assert queued.status == "queued"
    make_event("subscription_started", utc("2026-11-20 18:00"), id="sub-1", plan="pro")

    tick(utc("2026-11-21 01:00"))

    [message] = all_messages(store)
    assert message.status == "cancelled"
    assert transport.sent == []


def test_trial_ending_is_cancelled_when_trial_ends_at_changes_after_queueing(
    make_contact, tick, store, transport
):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-23T15:00:00Z")
    tick(utc("2026-11-20 15:00"))
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-30T15:00:00Z")

    tick(utc("2026-11-21 01:00"))

    [message] = all_messages(store)
    assert message.status == "cancelled"
    assert "trial_ends_at" in history_of(store, message.id)[-1].reason
    assert transport.sent == []


def test_moved_trial_end_gets_its_own_message_three_days_before_the_new_date(
    make_contact, tick, store, transport
):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-23T15:00:00Z")
    tick(utc("2026-11-20 15:00"))
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-30T03:00:00Z")
    tick(utc("2026-11-21 01:00"))

    tick(utc("2026-11-27 03:00"))

    assert sorted(m.status for m in all_messages(store)) == ["cancelled", "sent"]
    [email] = transport.sent
    assert "3 days" in text_of(email)


def test_trial_ending_delayed_by_the_frequency_cap_says_the_days_actually_left(
    make_contact, make_event, tick, transport
):
    make_contact("lan@example.com", trial_ends_at="2026-11-23T05:00:00Z")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart("c1"))
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-2", **cart("c2"))
    tick(utc("2026-11-20 04:00"))  # two cart reminders: the cap of 2 per 24h is reached
    tick(utc("2026-11-20 05:00"))  # the trial reminder is due, and waits until 2026-11-21 04:00

    tick(utc("2026-11-21 04:00"))  # sent 2 days and 1 hour before the trial ends

    [email] = [email for email in transport.sent if email["X-Automator-Rule"] == "trial_ending"]
    assert email["Subject"] == "Your Lotus Shop trial ends in 2 days"
