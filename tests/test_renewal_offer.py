"""The renewal offer: thirty days before `renews_at`, with a coupon taken from a pool."""

from __future__ import annotations

import re

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from automator import support
from automator.errors import StateError
from automator.store import Store, coupons, suppressions
from automator.tables import Coupon
from tests.conftest import all_messages, history_of, text_of, utc


def coupon_of(store: Store, message_id: int | None) -> Coupon | None:
    assert message_id is not None
    with store.session() as session:
        return coupons.for_message(session, message_id)


def fill_pool(store: Store, *codes: str) -> None:
    with store.session() as session:
        coupons.import_pool(
            session, "renewal", list(codes), 15, utc("2027-01-31 00:00"), utc("2026-11-01 00:00")
        )


def subscriber(make_contact, renews_at: str = "2026-12-20T03:00:00Z", **fields) -> int:
    fields.setdefault("stage", "retention")
    return make_contact("lan@example.com", first_name="Lan", renews_at=renews_at, **fields)


def test_renewal_offer_is_sent_thirty_days_before_with_a_pool_code(make_contact, store, tick, transport):
    subscriber(make_contact)
    fill_pool(store, "RENEW-AAAA")

    tick(utc("2026-11-20 02:59"))
    assert transport.sent == []
    tick(utc("2026-11-20 03:00"))

    [email] = transport.sent
    assert email["X-Automator-Rule"] == "renewal_offer"
    assert "RENEW-AAAA" in text_of(email)


def test_pool_code_is_assigned_to_the_contact_rule_and_message(make_contact, store, tick):
    contact_id = subscriber(make_contact)
    fill_pool(store, "RENEW-AAAA")

    tick(utc("2026-11-20 03:00"))

    [message] = all_messages(store)
    coupon = coupon_of(store, message.id)
    assert coupon is not None
    assert (coupon.code, coupon.pool, coupon.contact_id, coupon.rule_id) == (
        "RENEW-AAAA",
        "renewal",
        contact_id,
        "renewal_offer",
    )


def test_renewal_offer_is_held_when_the_pool_is_empty(make_contact, store, tick, transport):
    subscriber(make_contact)

    tick(utc("2026-11-20 03:00"))
    tick(utc("2026-11-20 09:00"))

    [message] = all_messages(store)
    assert message.status == "held"
    assert "pool" in history_of(store, message.id)[-1].reason
    assert "empty" in history_of(store, message.id)[-1].reason
    assert transport.sent == []


def test_released_renewal_offer_gets_a_code_and_is_sent_with_it(
    make_contact, engine, store, tick, transport, cli, tmp_path
):
    subscriber(make_contact)
    tick(utc("2026-11-20 03:00"))
    [held] = all_messages(store)
    (tmp_path / "codes.csv").write_text("code\nRENEW-BBBB\n", encoding="utf-8")
    with freeze_time("2026-11-20 04:00:00"):
        result = cli("coupons", "import", "renewal", str(tmp_path / "codes.csv"), "--percent-off", "15")
    assert result.exit_code == 0, result.output

    released = support.release(engine, held.id, "codes imported", "support", utc("2026-11-20 04:05"))
    assert released.status == "queued"
    coupon = coupon_of(store, held.id)
    assert coupon is not None and coupon.code == "RENEW-BBBB"
    tick(utc("2026-11-20 04:10"))

    [email] = transport.sent
    assert "RENEW-BBBB" in text_of(email)
    assert all_messages(store)[0].status == "sent"


def hold_then_release_two_days_later(make_contact, engine, store, tick) -> None:
    subscriber(make_contact)
    tick(utc("2026-11-20 03:00"))  # held: the pool is empty
    [held] = all_messages(store)
    fill_pool(store, "RENEW-AAAA")
    support.release(engine, held.id, "codes imported", "support", utc("2026-11-22 09:00"))
    tick(utc("2026-11-22 09:05"))


def test_released_offer_is_dated_when_it_is_sent(make_contact, engine, store, tick, transport):
    hold_then_release_two_days_later(make_contact, engine, store, tick)

    [email] = transport.sent
    assert email["Date"].datetime == utc("2026-11-22 09:05")


def test_released_offer_counts_the_days_left_from_when_it_goes_out(
    make_contact, engine, store, tick, transport
):
    hold_then_release_two_days_later(make_contact, engine, store, tick)

    [email] = transport.sent
    text = text_of(email)
    assert "RENEW-AAAA" in text
    assert re.search(r"renews on December 20, 2026, in 2[78] days", text), text


def test_releasing_while_the_pool_is_still_empty_keeps_the_offer_held(make_contact, engine, store, tick):
    subscriber(make_contact)
    tick(utc("2026-11-20 03:00"))
    [held] = all_messages(store)

    with pytest.raises(StateError, match=f"message {held.id} is still held: coupon pool 'renewal' is empty"):
        support.release(engine, held.id, "try again", "support", utc("2026-11-20 04:00"))
    tick(utc("2026-11-20 04:10"))

    [still] = all_messages(store)
    assert (still.status, still.send_at) == ("held", held.send_at)
    holds = [(line.reason, line.actor) for line in history_of(store, held.id) if line.status == "held"]
    assert holds == [
        ("coupon pool 'renewal' is empty", "automator"),
        ("not released: coupon pool 'renewal' is empty (asked: try again)", "support"),
    ]


def test_a_suppressed_subscriber_takes_no_code_from_the_pool(make_contact, store, tick, transport):
    subscriber(make_contact)
    fill_pool(store, "RENEW-AAAA")
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "unsubscribed", "", utc("2026-11-01 00:00"))

    tick(utc("2026-11-20 03:00"))

    [message] = all_messages(store)
    assert message.status == "suppressed"
    assert coupon_of(store, message.id) is None
    with store.session() as session:
        assert coupons.pool_counts(session) == {"renewal": (1, 0)}


def test_a_pool_code_goes_to_one_contact_only(make_contact, store, tick, transport):
    make_contact("lan@example.com", stage="retention", renews_at="2026-12-20T03:00:00Z")
    make_contact("minh@example.com", stage="retention", renews_at="2026-12-20T03:00:00Z")
    fill_pool(store, "RENEW-AAAA")

    tick(utc("2026-11-20 03:00"))

    assert sorted(m.status for m in all_messages(store)) == ["held", "sent"]
    [email] = transport.sent
    assert "RENEW-AAAA" in text_of(email)
    with store.session() as session:
        taken = session.execute(select(Coupon).where(Coupon.message_id.is_not(None))).scalars().all()
    assert len(taken) == 1


def test_next_years_renews_at_is_a_new_message(make_contact, store, tick, transport):
    subscriber(make_contact)
    fill_pool(store, "RENEW-AAAA", "RENEW-BBBB")
    tick(utc("2026-11-20 03:00"))
    subscriber(make_contact, renews_at="2027-12-20T03:00:00Z", stage="loyalty")

    tick(utc("2027-11-20 03:00"))

    assert [m.status for m in all_messages(store)] == ["sent", "sent"]
    assert ["RENEW-AAAA" in text_of(transport.sent[0]), "RENEW-BBBB" in text_of(transport.sent[1])] == [
        True,
        True,
    ]


def test_reimporting_the_same_renews_at_is_not_a_new_message(make_contact, store, tick, transport):
    subscriber(make_contact)
    fill_pool(store, "RENEW-AAAA", "RENEW-BBBB")
    tick(utc("2026-11-20 03:00"))
    subscriber(make_contact)  # the nightly CRM export, unchanged

    tick(utc("2026-11-20 09:00"))
    tick(utc("2026-11-21 03:00"))

    assert len(all_messages(store)) == 1
    assert len(transport.sent) == 1
