"""Contacts that qualify late: a contact whose attributes or stage change so that a rule now
matches an occurrence that was already due gets the message on the next tick, as long as the
occurrence is within the rule's max_lateness; after that, nothing. Whatever wrote the change
(the store, the HTTP API, an import), on both stores. The change log stays small."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from automator.importing import ContactRecord, contact_data
from automator.store import candidates, changes
from automator.store import contacts as contact_store
from automator.tables import ContactChange
from tests import test_api_keys
from tests.conftest import all_messages, cart, lookup_plan, utc, write_jsonl
from tests.importing import write_csv

client, make_key = test_api_keys.client, test_api_keys.make_key  # fixtures

VIP_CART = """\
id: vip_cart
name: Cart reminder for VIPs
stages: [consideration, conversion]
trigger:
  event: cart_updated
  latest_per: cart_id
  delay: 1h
when:
  - contact.vip: "yes"
send:
  template: abandoned_cart
max_lateness: 2h
"""
CART_AT = utc("2026-11-20 03:00")  # due at 04:00, too late after 06:00
DUE = utc("2026-11-20 04:00")


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    """The shipped project with one rule: the cart reminder, for VIPs only."""
    for path in (project_dir / "rules").glob("*.yaml"):
        if path.name != "journey.yaml":
            path.unlink()
    (project_dir / "rules" / "vip_cart.yaml").write_text(VIP_CART, encoding="utf-8")
    return project_dir


@pytest.fixture
def lan(make_contact, make_event, tick):
    """Lan, not a VIP, whose cart reminder came due and was passed over."""
    make_contact("lan@example.com", first_name="Lan", timezone="Asia/Ho_Chi_Minh", vip="no")
    make_event("cart_updated", CART_AT, id="evt-1", **cart())
    assert tick(DUE).rules["vip_cart"].enqueued == 0
    return "lan@example.com"


def sent_occurrences(store) -> list[tuple[str, str]]:
    return [(message.occurrence, message.status) for message in all_messages(store)]


def test_a_contact_who_becomes_vip_after_her_reminder_was_due_gets_it_on_the_next_tick(
    lan, make_contact, tick, store, transport
) -> None:
    make_contact(lan, timezone="Asia/Ho_Chi_Minh", vip="yes", _now=utc("2026-11-20 04:20"))

    report = tick(utc("2026-11-20 04:25"))

    assert report.rules["vip_cart"].enqueued == 1
    assert sent_occurrences(store) == [("evt-1", "sent")]
    assert len(transport.to(lan)) == 1


@pytest.fixture
def tagged_cart(project_dir: Path) -> str:
    """Beside vip_cart, the same reminder for contacts tagged `vip`."""
    rule = VIP_CART.replace("id: vip_cart", "id: tagged_cart").replace(
        'contact.vip: "yes"', "contact.tags: {contains: vip}"
    )
    (project_dir / "rules" / "tagged_cart.yaml").write_text(rule, encoding="utf-8")
    return "tagged_cart"


def test_a_contact_tagged_after_her_reminder_was_due_gets_it_from_the_rule_that_tests_tags(
    tagged_cart, lan, tick, store
) -> None:
    with store.session() as session:
        lan_id = contact_store.ids_by_email(session, [lan])[lan]
        contact_store.add_tags(session, [(lan_id, "vip")], utc("2026-11-20 04:20"))

    report = tick(utc("2026-11-20 04:25"))

    assert (report.rules["tagged_cart"].enqueued, report.rules["vip_cart"].enqueued) == (1, 0)
    assert [(message.rule_id, message.occurrence) for message in all_messages(store)] == [
        ("tagged_cart", "evt-1")
    ]


def test_a_change_of_tags_alone_is_not_looked_at_by_a_rule_that_does_not_test_tags(
    lan, make_contact, tick, store
) -> None:
    # Lan becomes a VIP by a write the log has lost (its row is deleted here), so that only
    # what is logged after it can make vip_cart look at her again.
    make_contact(lan, vip="yes")
    with store.session() as session:
        session.execute(text("DELETE FROM contact_change"))
        lan_id = contact_store.ids_by_email(session, [lan])[lan]
        contact_store.add_tags(session, [(lan_id, "newsletter")], utc("2026-11-20 04:20"))
    assert tick(utc("2026-11-20 04:25")).rules["vip_cart"].enqueued == 0  # tags alone: not looked at

    make_contact(lan, first_name="Lan Anh")  # a field: looked at

    assert tick(utc("2026-11-20 04:30")).rules["vip_cart"].enqueued == 1


def test_each_change_says_what_changed_and_the_stage_left(make_contact, store) -> None:
    lan = make_contact("lan@example.com", vip="no", stage="consideration")
    with store.session() as session:
        contact_store.add_tags(session, [(lan, "newsletter")], utc("2026-11-20 04:00"))
    make_contact("lan@example.com", stage="conversion")
    with store.session() as session:  # one transaction: a field, a tag and the stage
        session.execute(text("UPDATE contact SET first_name = 'Lan' WHERE id = :id"), {"id": lan})
        contact_store.add_tags(session, [(lan, "vip")], utc("2026-11-20 04:00"))
        session.execute(text("UPDATE contact SET stage = 'retention' WHERE id = :id"), {"id": lan})

    with store.session() as session:
        columns = (ContactChange.fields, ContactChange.stage, ContactChange.tags, ContactChange.from_stage)
        logged = [tuple(row) for row in session.execute(select(*columns).order_by(ContactChange.position))]
    tagged, moved = (False, False, True, None), (False, True, False, "consideration")
    # SQLite logs each write; PostgreSQL a contact once per transaction, with all it changed
    # and the stage it had before.
    assert logged in (
        [tagged, moved, (True, False, False, "conversion"), tagged, (False, True, False, "conversion")],
        [tagged, moved, (True, True, True, "conversion")],
    )


ANY_CART = VIP_CART.replace("id: vip_cart", "id: any_cart").replace('when:\n  - contact.vip: "yes"\n', "")


def passed_over(make_contact, make_event, tick, stage: str, rule_id: str) -> None:
    """Lan, in `stage`, with a cart the rule passes over when it comes due."""
    make_contact("lan@example.com", stage=stage, timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", CART_AT, id="evt-1", **cart())  # events move forward only
    assert tick(DUE).rules[rule_id].enqueued == 0


@pytest.fixture
def any_cart(project_dir: Path) -> None:
    """In vip_cart's place, the same reminder for every contact in its stages."""
    (project_dir / "rules" / "vip_cart.yaml").write_text(ANY_CART, encoding="utf-8")


def test_a_move_between_two_of_its_stages_is_not_looked_at_by_a_rule_that_reads_no_fields(
    any_cart, make_contact, make_event, tick, store
) -> None:
    passed_over(make_contact, make_event, tick, "retention", "any_cart")
    # She comes into the rule's stages by a write the log has lost (its row is deleted
    # here), so that only what is logged after it can make the rule look at her again.
    make_contact("lan@example.com", stage="conversion")
    with store.session() as session:
        session.execute(text("DELETE FROM contact_change"))
    make_contact("lan@example.com", stage="consideration")  # from conversion, one of its stages
    assert tick(utc("2026-11-20 04:30")).rules["any_cart"].enqueued == 0

    make_contact("lan@example.com", stage="retention")
    make_contact("lan@example.com", stage="conversion")  # from retention, outside them

    assert tick(utc("2026-11-20 04:40")).rules["any_cart"].enqueued == 1


@pytest.fixture
def conversion_cart(project_dir: Path) -> None:
    """In vip_cart's place, the same reminder for contacts whose stage is conversion, by a
    condition that names it."""
    rule = ANY_CART.replace("id: any_cart", "id: conversion_cart").replace(
        "send:", "when:\n  - contact.stage: conversion\nsend:"
    )
    (project_dir / "rules" / "vip_cart.yaml").write_text(rule, encoding="utf-8")


def test_a_move_between_two_of_its_stages_is_looked_at_by_a_rule_whose_conditions_name_the_stage(
    conversion_cart, make_contact, make_event, tick, store
) -> None:
    passed_over(make_contact, make_event, tick, "consideration", "conversion_cart")

    make_contact("lan@example.com", stage="conversion")

    assert tick(utc("2026-11-20 04:30")).rules["conversion_cart"].enqueued == 1


def test_a_contact_who_becomes_vip_after_max_lateness_gets_nothing(lan, make_contact, tick, store) -> None:
    make_contact(lan, timezone="Asia/Ho_Chi_Minh", vip="yes", _now=utc("2026-11-20 06:30"))

    report = tick(utc("2026-11-20 06:35"))

    assert report.rules["vip_cart"].enqueued == 0
    assert all_messages(store) == []


def test_a_contact_moved_into_the_rules_stage_late_gets_it(make_contact, make_event, tick, store) -> None:
    make_contact("lan@example.com", stage="retention", timezone="Asia/Ho_Chi_Minh", vip="yes")
    make_event("cart_updated", CART_AT, id="evt-1", **cart())  # events move forward only
    assert tick(DUE).rules["vip_cart"].enqueued == 0
    make_contact("lan@example.com", stage="conversion")

    tick(utc("2026-11-20 05:00"))

    assert sent_occurrences(store) == [("evt-1", "sent")]


def test_a_late_vip_gets_the_reminder_once_however_many_ticks_follow(lan, make_contact, tick, store) -> None:
    make_contact(lan, vip="yes")

    for now in ("04:25", "04:30", "05:00"):
        tick(utc(f"2026-11-20 {now}"))
    make_contact(lan, vip="yes", first_name="Lan Anh")  # changed again: looked at again, sent already
    tick(utc("2026-11-20 05:10"))

    assert sent_occurrences(store) == [("evt-1", "sent")]


def test_a_contact_posted_to_the_http_api_qualifies_late(lan, client, make_key, tick, store) -> None:
    writer = test_api_keys.bearer(make_key("contacts:write"))
    response = client.post("/v1/contacts", json={"email": lan, "vip": "yes"}, headers=writer)
    assert response.status_code == 200, response.text

    tick(utc("2026-11-20 04:25"))

    assert sent_occurrences(store) == [("evt-1", "sent")]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_contact_imported_by_the_cli_qualifies_late(lan, cli, store, tmp_path, kind) -> None:
    if kind == "csv":
        path = write_csv(tmp_path / "vip.csv", "email,vip", f"{lan},yes")
    else:
        path = write_jsonl(tmp_path / "vip.jsonl", [{"email": lan, "vip": "yes"}])

    imported = cli("contacts", "import", str(path))
    ticked = cli("tick", "--now", "2026-11-20T04:25:00Z")

    assert imported.exit_code == 0, imported.output
    assert ticked.exit_code == 0, ticked.output
    assert sent_occurrences(store) == [("evt-1", "sent")]


def test_a_contact_imported_by_the_cli_after_max_lateness_gets_nothing(lan, cli, store, tmp_path) -> None:
    cli("contacts", "import", str(write_csv(tmp_path / "vip.csv", "email,vip", f"{lan},yes")))

    cli("tick", "--now", "2026-11-20T06:01:00Z")

    assert all_messages(store) == []


def test_a_change_committed_after_a_tick_looked_is_seen_by_the_next(
    lan, project, make_contact, tick, store, database_url
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: the tick would wait for the import")
    make_contact("minh@example.com")
    slow_import = store.writing()  # e.g. a long import, begun before the tick
    record = ContactRecord.model_validate({"email": lan, "vip": "yes"})
    contact_store.upsert(slow_import, [contact_data(record, project.journey, project.settings.zone)], DUE)
    make_contact("minh@example.com", vip="no")  # a change committed meanwhile, after the import's

    tick(utc("2026-11-20 04:10"))
    slow_import.commit()
    slow_import.close()
    tick(utc("2026-11-20 04:20"))

    assert sent_occurrences(store) == [("evt-1", "sent")]


DAILY_VIP = """\
id: daily_vip
name: A daily note for VIP customers
stages: [retention, loyalty]
trigger:
  every: 1d
when:
  - contact.vip: "yes"
send:
  template: vip_note
max_lateness: 6h
"""


@pytest.fixture
def daily_vip(project_dir: Path) -> None:
    (project_dir / "rules" / "daily_vip.yaml").write_text(DAILY_VIP, encoding="utf-8")
    template = project_dir / "email_templates" / "vip_note"
    template.mkdir()
    (template / "subject.txt").write_text("For our VIPs", encoding="utf-8")
    (template / "body.txt").write_text("Hello {{ contact.first_name }}", encoding="utf-8")
    (template / "body.html").write_text("<p>Hello {{ contact.first_name }}</p>", encoding="utf-8")


@pytest.mark.parametrize("lan_before", ["not a VIP", "not a contact"])
def test_a_contact_who_becomes_vip_or_is_added_after_a_schedule_fired_gets_that_firing(
    lan_before, daily_vip, make_contact, tick, store
) -> None:
    if lan_before == "not a VIP":
        make_contact("lan@example.com", stage="retention", vip="no")
    make_contact("minh@example.com", stage="retention", vip="yes")
    tick(utc("2026-11-20 00:05"))  # fired at 00:00: Minh
    make_contact("lan@example.com", stage="retention", vip="yes")

    tick(utc("2026-11-20 01:05"))
    tick(utc("2026-11-20 02:05"))

    fired = "schedule@2026-11-20T00:00:00+00:00"
    assert sorted((m.email, m.occurrence, m.status) for m in all_messages(store)) == [
        ("lan@example.com", fired, "sent"),
        ("minh@example.com", fired, "sent"),
    ]


def test_a_contact_who_becomes_vip_after_a_firings_max_lateness_waits_for_the_next(
    daily_vip, make_contact, tick, store
) -> None:
    make_contact("lan@example.com", stage="retention", vip="no")
    tick(utc("2026-11-20 00:05"))
    make_contact("lan@example.com", stage="retention", vip="yes")

    tick(utc("2026-11-20 06:05"))

    assert all_messages(store) == []


def test_a_write_that_changes_nothing_is_not_logged(make_contact, store) -> None:
    make_contact("lan@example.com", first_name="Lan", vip="no")  # a new contact needs no entry
    make_contact("lan@example.com", first_name="Lan", vip="no")

    assert change_count(store) == 0


def test_tags_added_and_removed_are_logged(make_contact, store) -> None:
    lan = make_contact("lan@example.com")
    for _ in range(2):  # the second time, she has it already
        with store.session() as session:
            contact_store.add_tags(session, [(lan, "cart_abandoner")], utc("2026-11-20 04:00"))
    with store.session() as session:
        session.execute(text("DELETE FROM contact_tag"))

    assert change_count(store) == 2


def test_the_change_log_keeps_only_what_a_rule_has_not_looked_at(lan, make_contact, tick, store) -> None:
    for number in range(5):
        make_contact(lan, vip="yes", first_name=f"Lan {number}")
    assert change_count(store) == 5

    tick(utc("2026-11-20 04:25"))

    # On SQLite the newest stays, for positions to go on from it; PostgreSQL's positions are
    # transaction ids, and none needs to stay.
    assert change_count(store) == (1 if store.engine.dialect.name == "sqlite" else 0)
    make_contact(lan, first_name="Lan")
    with store.session() as session:
        assert session.execute(select(ContactChange.position)).scalars().all()[-1] >= 1


def test_the_lookup_of_changed_contacts_starts_from_the_change_log(project, store, database_url) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the plan of SQLite, which has no statistics to go by")
    [rule] = project.rules
    steps = lookup_plan(store, rule, DUE, candidates.Watermark(until=DUE, seq=10, changes=1))
    changed_window = steps[len(steps) - steps[::-1].index("UNION ALL") :]

    # The changed contacts' ids, from the log, lead: never the time window.
    assert "rowid=?" in changed_window[0] or "contact_id=?" in changed_window[0], changed_window
    assert "SEARCH contact_change USING PRIMARY KEY (position>?)" in changed_window, changed_window
    assert not any("ix_event_type_at_contact" in step for step in changed_window), changed_window


def change_count(store) -> int:
    with store.session() as session:
        return int(session.execute(select(func.count()).select_from(changes.CHANGES)).scalar_one())
