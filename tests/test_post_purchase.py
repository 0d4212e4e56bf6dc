"""The post-purchase thank-you: a day after an order, with a unique coupon for the next one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from automator.importing import import_events
from automator.store import Store, messages
from automator.store.messages import QueueFilter
from automator.tables import Coupon, Message
from tests.conftest import utc, write_jsonl

ORDER = {"order_id": "A-1001", "total": 1_250_000, "currency": "VND"}


def all_messages(store: Store) -> list[Message]:
    with store.session() as session:
        return messages.listing(session, QueueFilter(limit=1000))


def all_coupons(store: Store) -> list[Coupon]:
    with store.session() as session:
        return list(session.execute(select(Coupon).order_by(Coupon.id)).scalars())


def text_of(email) -> str:
    return email.get_body(("plain",)).get_content()


def order_record(event_id: str, at: str, email: str = "lan@example.com", **properties) -> dict:
    return {"id": event_id, "type": "order_placed", "email": email, "at": at,
            "properties": {**ORDER, **properties}}  # fmt: skip


def test_thank_you_is_sent_a_day_after_the_order(make_contact, make_event, tick, store, transport):
    make_contact("lan@example.com")
    make_event("order_placed", utc("2026-11-20 03:00"), id="ord-1", **ORDER)

    tick(utc("2026-11-21 02:59"))
    assert transport.sent == []
    tick(utc("2026-11-21 03:00"))

    [message] = all_messages(store)
    assert (message.rule_id, message.status, message.sent_at) == (
        "post_purchase_thank_you",
        "sent",
        utc("2026-11-21 03:00"),
    )
    assert transport.sent[0]["Subject"] == "Thank you for your order #A-1001"


def test_thank_you_carries_a_coupon_stored_with_contact_rule_value_and_expiry(
    make_contact, make_event, tick, store, transport
):
    contact_id = make_contact("lan@example.com")
    make_event("order_placed", utc("2026-11-20 03:00"), id="ord-1", **ORDER)

    tick(utc("2026-11-21 03:00"))

    [message] = all_messages(store)
    [coupon] = all_coupons(store)
    assert coupon.code.startswith("THANKS-")
    assert (coupon.contact_id, coupon.rule_id, coupon.message_id) == (
        contact_id,
        "post_purchase_thank_you",
        message.id,
    )
    assert coupon.percent_off == 10
    assert coupon.expires_at == utc("2026-11-21 03:00") + timedelta(days=60)
    assert coupon.code in text_of(transport.sent[0])


def test_two_contacts_never_share_a_code(make_contact, make_event, tick, transport):
    for n in range(12):
        make_contact(f"buyer{n}@example.com")
        make_event("order_placed", utc("2026-11-20 03:00"), email=f"buyer{n}@example.com",
                   id=f"ord-{n}", **{**ORDER, "order_id": f"A-{n}"})  # fmt: skip

    tick(utc("2026-11-21 03:00"))

    codes = [line.strip() for e in transport.sent for line in text_of(e).splitlines() if "THANKS-" in line]
    assert len(codes) == 12
    assert len(set(codes)) == 12


def test_rerunning_the_tick_issues_no_second_code_or_message(
    make_contact, make_event, tick, store, transport
):
    make_contact("lan@example.com")
    make_event("order_placed", utc("2026-11-20 03:00"), id="ord-1", **ORDER)

    tick(utc("2026-11-21 03:00"))
    tick(utc("2026-11-21 03:00"))
    tick(utc("2026-11-21 09:00"))
    tick(utc("2026-11-22 09:00"))

    assert len(all_messages(store)) == 1
    assert len(all_coupons(store)) == 1
    assert len(transport.sent) == 1


def test_importing_the_same_order_event_twice_issues_one_code(
    make_contact, project, store, tick, transport, tmp_path
):
    make_contact("lan@example.com")
    path = write_jsonl(tmp_path / "orders.jsonl", [order_record("ord-1", "2026-11-20T03:00:00Z")])

    import_events(store, path, project.journey, utc("2026-11-20 03:01"))
    tick(utc("2026-11-21 03:00"))
    second = import_events(store, path, project.journey, utc("2026-11-21 04:00"))
    tick(utc("2026-11-21 05:00"))

    assert (second.imported, second.duplicates) == (0, 1)
    assert len(all_coupons(store)) == 1
    assert len(transport.sent) == 1


def test_same_order_id_under_another_event_id_gets_one_thank_you(
    make_contact, project, store, tick, transport, tmp_path
):
    make_contact("lan@example.com")
    path = write_jsonl(
        tmp_path / "orders.jsonl",
        [
            order_record("shop-ord-1", "2026-11-20T03:00:00Z"),
            order_record("crm-ord-1", "2026-11-20T03:05:00Z"),  # the same order, reported again
        ],
    )

    import_events(store, path, project.journey, utc("2026-11-20 03:10"))
    tick(utc("2026-11-21 03:10"))

    [message] = all_messages(store)
    assert message.occurrence == "A-1001"
    assert len(all_coupons(store)) == 1
    assert len(transport.sent) == 1


def test_order_reported_again_after_the_thank_you_gets_no_second_one(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    make_event("order_placed", utc("2026-11-20 03:00"), id="shop-ord-1", **ORDER)
    tick(utc("2026-11-21 03:00"))
    make_event("order_placed", utc("2026-11-20 20:00"), id="crm-ord-1", **ORDER)

    tick(utc("2026-11-21 20:00"))

    assert len(all_messages(store)) == 1
    assert len(all_coupons(store)) == 1
    assert len(transport.sent) == 1


def test_two_orders_of_one_contact_get_two_codes(make_contact, make_event, store, tick, transport):
    make_contact("lan@example.com")
    make_event("order_placed", utc("2026-11-20 03:00"), id="ord-1", **ORDER)
    make_event("order_placed", utc("2026-11-20 05:00"), id="ord-2", **{**ORDER, "order_id": "A-1002"})

    tick(utc("2026-11-21 05:00"))

    assert len({coupon.code for coupon in all_coupons(store)}) == 2
    assert sorted(email["Subject"] for email in transport.sent) == [
        "Thank you for your order #A-1001",
        "Thank you for your order #A-1002",
    ]
