"""The abandoned cart flow: an hour after the latest update of a cart, unless an order came."""

from __future__ import annotations

import pytest

from tests.conftest import all_messages, cart, history_of, text_of, utc

# Asia/Ho_Chi_Minh is UTC+7, so its quiet hours (21:00–08:00) are 14:00–01:00 UTC.


@pytest.fixture
def lan(make_contact):
    return make_contact("lan@example.com", first_name="Lan", timezone="Asia/Ho_Chi_Minh")


def test_abandoned_cart_is_not_sent_before_the_hour_is_up(lan, make_event, tick, store, transport):
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    report = tick(utc("2026-11-20 03:59"))

    assert report.rules["abandoned_cart"].enqueued == 0
    assert all_messages(store) == []
    assert transport.sent == []


def test_abandoned_cart_is_sent_an_hour_after_the_cart(lan, make_event, tick, store, transport):
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    [message] = all_messages(store)
    assert (message.status, message.due_at, message.sent_at) == (
        "sent",
        utc("2026-11-20 04:00"),
        utc("2026-11-20 04:00"),
    )
    assert len(transport.to("lan@example.com")) == 1


def test_abandoned_cart_email_lists_the_items_and_the_total(lan, make_event, tick, transport):
    items = [
        {"name": "Silk scarf", "quantity": 2, "price": 250_000},
        {"name": "Áo dài lụa", "quantity": 1, "price": 750_000},
    ]
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **{**cart(), "items": items})

    tick(utc("2026-11-20 04:00"))

    [email] = transport.sent
    text = text_of(email)
    assert "- Silk scarf x 2: ₫500,000" in text
    assert "- Áo dài lụa x 1: ₫750,000" in text
    assert "Total: ₫1,250,000" in text
    assert "https://shop.example.com/cart/c1" in text
    html = email.get_body(("html",)).get_content()
    assert "Silk scarf" in html and "Áo dài lụa" in html and "₫1,250,000" in html


def test_vietnamese_abandoned_cart_shows_the_total_in_dong(make_contact, make_event, tick, transport):
    make_contact("lan@example.com", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    [email] = transport.sent
    assert "Tổng cộng: 1.250.000 ₫" in text_of(email)


def test_abandoned_cart_counts_only_the_latest_update_of_a_cart(lan, make_event, tick, store, transport):
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart(total=500_000))
    make_event("cart_updated", utc("2026-11-20 03:20"), id="evt-2", **cart(total=1_250_000))

    tick(utc("2026-11-20 04:00"))
    assert all_messages(store) == []  # the first update is superseded, the second not yet due
    tick(utc("2026-11-20 04:20"))
    tick(utc("2026-11-20 06:00"))

    [message] = all_messages(store)
    assert message.occurrence == "evt-2"
    assert message.due_at == utc("2026-11-20 04:20")
    [email] = transport.sent
    assert "Total: ₫1,250,000" in text_of(email)


def test_newer_update_of_a_waiting_cart_supersedes_the_queued_message(
    lan, make_event, tick, store, transport
):
    make_event("cart_updated", utc("2026-11-20 13:30"), id="evt-1", **cart(total=500_000))
    tick(utc("2026-11-20 14:30"))  # 21:30 in Ho Chi Minh City: waits for 08:00
    make_event("cart_updated", utc("2026-11-20 15:00"), id="evt-2", **cart(total=1_250_000))

    tick(utc("2026-11-21 01:00"))

    by_occurrence = {message.occurrence: message for message in all_messages(store)}
    assert by_occurrence["evt-1"].status == "cancelled"
    assert by_occurrence["evt-2"].status == "sent"
    [email] = transport.sent
    assert "Total: ₫1,250,000" in text_of(email)


def test_abandoned_cart_is_cancelled_by_order_before_it_is_queued(lan, make_event, tick, store, transport):
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())
    make_event("order_placed", utc("2026-11-20 03:30"), id="ord-1", order_id="A-1", total=1, currency="VND")

    tick(utc("2026-11-20 04:00"))

    assert [m for m in all_messages(store) if m.rule_id == "abandoned_cart"] == []
    assert transport.sent == []


def test_abandoned_cart_is_cancelled_by_order_while_waiting(lan, make_event, tick, store, transport):
    make_event("cart_updated", utc("2026-11-20 13:30"), id="evt-1", **cart())
    tick(utc("2026-11-20 14:30"))  # 21:30 local: queued until 08:00 local
    [queued] = all_messages(store)
    assert (queued.status, queued.send_at) == ("queued", utc("2026-11-21 01:00"))
    make_event("order_placed", utc("2026-11-20 15:00"), id="ord-1", order_id="A-1", total=1, currency="VND")

    tick(utc("2026-11-21 01:00"))

    [message] = [m for m in all_messages(store) if m.rule_id == "abandoned_cart"]
    assert message.status == "cancelled"
    assert transport.sent == []


def test_abandoned_cart_cancelled_by_order_names_the_order_in_its_history(lan, make_event, tick, store):
    make_event("cart_updated", utc("2026-11-20 13:30"), id="evt-1", **cart())
    tick(utc("2026-11-20 14:30"))
    make_event("order_placed", utc("2026-11-20 15:00"), id="ord-1", order_id="A-1", total=1, currency="VND")

    tick(utc("2026-11-21 01:00"))

    [message] = [m for m in all_messages(store) if m.rule_id == "abandoned_cart"]
    last = history_of(store, message.id)[-1]
    assert last.status == "cancelled"
    assert "order_placed" in last.reason


def test_different_carts_get_separate_messages(lan, make_event, tick, store, transport):
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart("c1"))
    make_event("cart_updated", utc("2026-11-20 03:10"), id="evt-2", **cart("c2"))

    tick(utc("2026-11-20 04:10"))

    assert sorted(m.occurrence for m in all_messages(store)) == ["evt-1", "evt-2"]
    links = sorted(url for url in ("/cart/c1", "/cart/c2") for e in transport.sent if url in text_of(e))
    assert links == ["/cart/c1", "/cart/c2"]


def test_abandoned_cart_skips_contacts_past_conversion(make_contact, make_event, tick, store, transport):
    make_contact("lan@example.com", stage="retention")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    assert all_messages(store) == []
    assert transport.sent == []


def test_cart_moves_an_awareness_contact_into_consideration_and_it_gets_the_reminder(
    make_contact, make_event, tick, transport
):
    make_contact("lan@example.com", stage="awareness")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    assert len(transport.to("lan@example.com")) == 1


def test_a_cart_reported_late_is_still_reminded_on_the_next_tick(lan, make_event, tick, store, transport):
    tick(utc("2026-11-20 05:00"))  # the 03:00 cart is not in the store yet
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-late", **cart())

    tick(utc("2026-11-20 05:10"))

    [message] = all_messages(store)
    assert (message.occurrence, message.status) == ("evt-late", "sent")
    assert len(transport.to("lan@example.com")) == 1


def test_a_cart_reported_after_its_max_lateness_is_never_reminded(lan, make_event, tick, store, transport):
    tick(utc("2026-11-22 05:00"))
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-stale", **cart())  # due 04:00 two days ago

    tick(utc("2026-11-22 05:10"))

    assert all_messages(store) == []
    assert transport.sent == []


def test_only_carts_of_contacts_in_the_targeted_stages_with_a_total_get_a_reminder(
    make_contact, make_event, tick, transport
):
    make_contact("lan@example.com", stage="consideration")
    make_contact("empty@example.com", stage="consideration")
    make_contact("loyal@example.com", stage="loyalty")
    make_event("cart_updated", utc("2026-11-20 03:00"), "lan@example.com", **cart("c1"))
    make_event("cart_updated", utc("2026-11-20 03:00"), "empty@example.com", **cart("c2", total=0))
    make_event("cart_updated", utc("2026-11-20 03:00"), "loyal@example.com", **cart("c3"))

    report = tick(utc("2026-11-20 04:00"))

    assert report.rules["abandoned_cart"].enqueued == 1
    assert [email["To"].addresses[0].addr_spec for email in transport.sent] == ["lan@example.com"]
