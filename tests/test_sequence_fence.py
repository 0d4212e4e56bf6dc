"""On PostgreSQL, a row's id is given when it is inserted, not when it is committed: a rule's
mark of new rows must not pass a row whose transaction is still open, or every later tick
would pass that row over. A tick reads its marks behind the sequence fence
(`store.postgres`); while such a transaction is open it keeps the marks it had, and a later
tick finds the row."""

from __future__ import annotations

import threading

import pytest

from automator.importing import EventRecord, event_key
from automator.staged import EventData
from automator.store import events as event_store
from tests.conftest import all_messages, cart, utc


@pytest.fixture(autouse=True)
def on_postgresql(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: its ids follow the commits")


def test_a_late_event_committed_after_a_later_one_is_found(make_contact, make_event, tick, store, project):
    make_contact("lan@example.com", first_name="Lan")
    make_contact("minh@example.com", first_name="Minh")
    tick(utc("2026-11-20 04:10"))
    record = EventRecord.model_validate(
        {
            "id": "evt-lan",
            "type": "cart_updated",
            "email": "lan@example.com",
            "at": "2026-11-20T03:00:00Z",
            "properties": cart(),
        }
    )
    slow_import = store.writing()  # Lan's cart, due at 04:00, on its way in a long transaction
    event_store.add(
        slow_import,
        [EventData(event_key(record), record.type, record.email, record.at, record.properties)],
        project.journey,
        utc("2026-11-20 04:12"),
    )
    make_event("cart_updated", utc("2026-11-20 04:05"), email="minh@example.com", id="evt-minh", **cart("c2"))

    ticking = threading.Thread(target=tick, args=(utc("2026-11-20 04:20"),))
    ticking.start()
    ticking.join(timeout=60)  # bounded: a tick does not wait for the import
    tick_ended_first = not ticking.is_alive()
    slow_import.commit()
    slow_import.close()
    ticking.join(timeout=60)
    tick(utc("2026-11-20 05:10"))

    assert tick_ended_first
    carts = sorted((m.email, m.occurrence) for m in all_messages(store) if m.rule_id == "abandoned_cart")
    assert carts == [("lan@example.com", "evt-lan"), ("minh@example.com", "evt-minh")]
