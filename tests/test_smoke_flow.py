"""A first end-to-end check of the abandoned cart flow through the engine."""

from tests.conftest import cart, utc


def test_abandoned_cart_is_sent_once_an_hour_after_the_cart(make_contact, make_event, tick, transport):
    make_contact("lan@example.com", first_name="Lan", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())
    assert tick(utc("2026-11-20 03:59")).rules["abandoned_cart"].enqueued == 0
    report = tick(utc("2026-11-20 04:00"))
    assert report.rules["abandoned_cart"].sent == 1
    tick(utc("2026-11-20 04:00"))
    assert len(transport.sent) == 1
    assert "1.250.000 ₫" in transport.sent[0].get_body(("plain",)).get_content()
