"""The right to erasure (`DELETE /v1/contacts/{email}`, `automator contacts erase`): nothing
personal is left in any table, the counts stay, messages not sent yet are cancelled, and the
address, kept only as a hash, is suppressed: a later import or API call for it is never
mailed. Audited. On both stores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import SQLModel

from automator.store import audit, messages, suppressions
from automator.store.messages import QueueFilter
from automator.tables import Message
from tests import test_api_keys
from tests.conftest import all_messages, cart, utc
from tests.test_api_keys import bearer

client, make_key = test_api_keys.client, test_api_keys.make_key  # fixtures

# Asia/Ho_Chi_Minh is UTC+7: its quiet hours (21:00–08:00) are 14:00–01:00 UTC.
PERSONAL = [
    "lan@example.com",
    "Lan",
    "Tran",
    "+84 90 123 4567",
    "cart-lan",
    "evt-lan",
    "2027-03-01",
    "Hoan Kiem",
]


@pytest.fixture
def lan(make_contact, make_event, tick, cli, store) -> int:
    """Lan, with attributes, a date, a tag and stage changes, events, a sent reminder and a
    second one queued (quiet hours) that support held with a reason naming her."""
    contact_id: int = make_contact(
        "lan@example.com",
        first_name="Lan",
        last_name="Tran",
        timezone="Asia/Ho_Chi_Minh",
        phone="+84 90 123 4567",
        renews_at="2027-03-01",
    )
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-lan-1", **cart("cart-lan-1"))
    tick(utc("2026-11-20 04:00"))
    address = {**cart("cart-lan-2"), "ship_to": "12 Hang Bac, Hoan Kiem"}
    make_event("cart_updated", utc("2026-11-20 13:30"), id="evt-lan-2", **address)
    tick(utc("2026-11-20 14:30"))
    queued = [message for message in all_messages(store) if message.status == "queued"]
    held = cli("queue", "hold", str(queued[0].id), "--reason", "Lan Tran asked us to wait", "--by", "mai")
    assert held.exit_code == 0, held.output
    return contact_id


@pytest.fixture
def eraser(make_key) -> dict[str, str]:
    return bearer(make_key("contacts:erase", "contacts:write", "events:write", name="privacy"))


def personal_data_left(store) -> list[str]:
    """Every value in every table that holds one of PERSONAL, as `table.column: value`."""
    found = []
    with store.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                found += [
                    f"{table.name}.{column}: {value!r}"
                    for column, value in row.items()
                    if any(text in repr(value) for text in PERSONAL)
                ]
    return found


def test_erasure_leaves_nothing_personal_in_any_table(lan, client, eraser, store) -> None:
    assert len(personal_data_left(store)) > 10  # the test sees what it looks for

    response = client.delete("/v1/contacts/lan@example.com", headers=eraser)

    assert response.status_code == 200
    assert response.json() == {"found": True, "events": 2, "messages": 2, "cancelled": 1}
    assert personal_data_left(store) == []


def test_erasure_keeps_the_counts_and_cancels_what_was_not_sent(lan, client, eraser, store) -> None:
    client.delete("/v1/contacts/lan@example.com", headers=eraser)

    with store.session() as session:
        rows = session.execute(select(Message)).scalars().all()
        counts = messages.counts_by_status(session)
        history = messages.history(session, rows[0].id)
    assert counts == {"sent": 1, "cancelled": 1}
    assert {row.rule_id for row in rows} == {"abandoned_cart"}
    assert {row.email for row in rows} == {f"erased-{lan}"}
    assert [line.status for line in history] == ["queued", "sending", "sent"]


def test_erasure_is_audited_without_the_address(lan, client, eraser, store) -> None:
    client.delete("/v1/contacts/lan@example.com", headers=eraser)

    with store.session() as session:
        [entry] = audit.for_action(session, "erase contact")
    assert (entry.actor, entry.contact_id) == ("api key privacy", lan)


def test_an_erased_address_is_suppressed_by_its_hash_alone(lan, client, eraser, store) -> None:
    client.delete("/v1/contacts/lan@example.com", headers=eraser)

    with store.session() as session:
        listed = [row.email for row in suppressions.listing(session)]
        found = suppressions.among(session, {"lan@example.com", "minh@example.com"})
    assert suppressions.hashed("lan@example.com") in listed and "lan@example.com" not in listed
    assert found == {"lan@example.com"}


def test_an_erased_address_that_arrives_again_is_never_mailed(
    lan, client, eraser, tick, store, transport
) -> None:
    client.delete("/v1/contacts/lan@example.com", headers=eraser)
    sent_before = len(transport.sent)

    client.post("/v1/contacts", json={"email": "lan@example.com", "first_name": "Lan"}, headers=eraser)
    event: dict[str, Any] = {"id": "evt-again", "type": "cart_updated", "email": "lan@example.com"}
    event |= {"at": "2026-11-21T03:00:00Z", "properties": cart("cart-again")}
    client.post("/v1/events", json=event, headers=eraser)
    tick(utc("2026-11-21 04:00"))

    with store.session() as session:
        again = messages.listing(session, QueueFilter(email="lan@example.com"))
    assert [message.status for message in again] == ["suppressed"]
    assert len(transport.sent) == sent_before


def test_an_erased_address_that_arrives_by_an_event_alone_is_suppressed_too(client, eraser, store) -> None:
    client.delete("/v1/contacts/minh@example.com", headers=eraser)

    event = {"id": "e1", "type": "cart_updated", "email": "minh@example.com", "at": "2026-11-21T03:00:00Z"}
    client.post("/v1/events", json=event, headers=eraser)

    with store.session() as session:
        found = suppressions.get(session, "minh@example.com")
    assert found is not None and found.reason == "erased"


def test_erasing_an_unknown_address_suppresses_it_all_the_same(client, eraser, store) -> None:
    response = client.delete("/v1/contacts/nobody@example.com", headers=eraser)

    assert response.json() == {"found": False, "events": 0, "messages": 0, "cancelled": 0}
    with store.session() as session:
        assert suppressions.among(session, {"nobody@example.com"}) == {"nobody@example.com"}


def test_erasing_something_that_is_not_an_address_is_refused(client, eraser) -> None:
    response = client.delete("/v1/contacts/not-an-address", headers=eraser)

    assert response.status_code == 422
    assert "is not valid" in response.json()["detail"]


def test_contacts_erase_on_the_command_line_says_what_it_did(lan, cli, store) -> None:
    result = cli("contacts", "erase", "Lan@Example.com", "--by", "dpo", "--reason", "ticket 4411")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"erased contact #{lan}: 2 events deleted, 2 messages kept without personal data "
        "(1 not sent yet, cancelled); its address is suppressed, as a hash"
    )
    assert personal_data_left(store) == []
    with store.session() as session:
        [entry] = audit.for_action(session, "erase contact")
    assert (entry.actor, entry.reason) == ("dpo", "ticket 4411")
    assert cli("contacts", "show", "lan@example.com").exit_code == 1


def test_an_erased_address_in_a_later_import_is_suppressed(cli, client, eraser, store, tmp_path) -> None:
    client.delete("/v1/contacts/lan@example.com", headers=eraser)
    sync = tmp_path / "contacts.csv"
    sync.write_text("email,first_name\nLan@example.com,Lan\nminh@example.com,Minh\n", encoding="utf-8")

    imported = cli("contacts", "import", str(sync))

    assert imported.exit_code == 0, imported.output
    with store.session() as session:
        lan = suppressions.get(session, "lan@example.com")
        minh = suppressions.get(session, "minh@example.com")
    assert lan is not None and lan.email == "lan@example.com" and lan.reason == "erased"
    assert minh is None


def test_an_event_arriving_after_an_erasure_is_still_looked_at(
    make_contact, make_event, tick, client, eraser, store
) -> None:
    """Erasing the contact of the newest event must not hand that event's id out again (SQLite
    reuses the highest id of a table): a late event given it would sit at the rule's mark
    and never be looked at."""
    make_contact("lan@example.com")
    make_contact("minh@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-lan-1", **cart("cart-lan-1"))
    tick(utc("2026-11-20 04:30"))
    assert client.delete("/v1/contacts/lan@example.com", headers=eraser).status_code == 200

    # Due at 04:15, before the mark: found only as a row that arrived since the last tick.
    make_event(
        "cart_updated", utc("2026-11-20 03:15"), "minh@example.com", id="evt-minh-1", **cart("cart-minh")
    )
    report = tick(utc("2026-11-20 04:45"))

    assert report.rules["abandoned_cart"].enqueued == 1
    assert "minh@example.com" in {message.email for message in all_messages(store)}
