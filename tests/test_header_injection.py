"""A contact's name that carries a line break never becomes a header: import refuses it
(tests/test_import_safety.py), and one that reaches the database anyway (an older import, a
hand-written row) holds its message with the reason instead of sending it."""

# The console tests' fixtures are imported by name; pytest passes them to the tests as arguments.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from automator.store import Store
from tests.conftest import all_messages, cart, history_of, utc
from tests.test_console_http import accounts, admin, console_app  # noqa: F401  (fixtures)

EVIL = "Eve\r\nBcc: attacker@evil.test\r\n\r\nLog in at http://evil.test/"


def held_for_its_name(
    make_contact: Callable[..., int], make_event: Callable[..., str], store: Store, tick
) -> int:
    make_contact("eve@example.com", first_name="Eve")
    with store.engine.begin() as connection:  # as an older release's import could have stored it
        connection.execute(text("UPDATE contact SET first_name = :name"), {"name": EVIL})
    make_event("cart_updated", utc("2026-11-20 03:00"), email="eve@example.com", id="cart-1", **cart())
    tick(utc("2026-11-20 04:00"))
    [message] = all_messages(store)
    assert message.id is not None
    return message.id


def test_a_crlf_name_in_the_database_holds_the_message_instead_of_sending_it(
    make_contact, make_event, store, tick, transport
) -> None:
    message_id = held_for_its_name(make_contact, make_event, store, tick)

    [message] = all_messages(store)
    assert (message.status, message.hold_kind) == ("held", "header")
    assert transport.sent == []
    reason = history_of(store, message_id)[-1].reason
    assert reason.startswith("header To: the name 'Eve\\r\\nBcc: attacker@evil.test")
    assert "held, not sent" in reason


def test_the_console_shows_why_a_message_held_for_its_header_cannot_go(
    make_contact, make_event, store, tick, admin
) -> None:
    message_id = held_for_its_name(make_contact, make_event, store, tick)

    page = admin.get(f"/messages/{message_id}")

    assert page.status_code == 200
    assert "It cannot be sent as it is: header To:" in page.text
    assert "<th>To</th>" not in page.text  # no headers are shown as if it could be sent
