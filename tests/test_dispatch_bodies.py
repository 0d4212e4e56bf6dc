"""The dispatcher reads a claimed batch's bodies as they are stored and unpacks them where it
builds the emails. A body that cannot be unpacked holds its own message (as a failed
render: releasing it renders it again) and never stops the batch."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from automator.engine import Engine
from automator.reports import TickReport
from automator.store import Store
from automator.store.messages import CONTENT
from tests.conftest import all_messages, cart, history_of, utc


@pytest.mark.sqlite_only  # only SQLite stores bodies packed; PostgreSQL keeps them as text
def test_a_body_that_cannot_be_unpacked_holds_its_message_and_the_others_go(
    make_contact, make_event, store: Store, engine: Engine, tick, transport
) -> None:
    for email in ("lan@example.com", "minh@example.com"):
        make_contact(email)
        make_event("cart_updated", utc("2026-11-20 03:00"), email=email, id=f"cart-{email}", **cart())
    engine.evaluate(utc("2026-11-20 04:00"), TickReport(utc("2026-11-20 04:00")))  # queued, not sent
    broken, whole = sorted(all_messages(store), key=lambda message: message.email)
    with store.engine.begin() as connection:
        connection.execute(
            update(CONTENT).where(CONTENT.c.message_id == broken.id).values(html_body=b"not an LZ4 frame")
        )

    report = tick(utc("2026-11-20 04:00"))

    assert [email["To"] for email in transport.sent] == [whole.email]
    held = {message.id: message for message in all_messages(store)}[broken.id]
    assert (held.status, held.hold_kind) == ("held", "render")
    assert broken.id is not None
    reason = history_of(store, broken.id)[-1].reason
    assert reason.startswith("its stored body cannot be read (")
    assert reason.endswith("releasing it renders it again")
    assert report.rules["abandoned_cart"].outcomes["held: unreadable body"] == 1
