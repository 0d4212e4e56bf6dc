"""A/B variants: a deterministic split by contact that follows the weights, each variant's own
template and coupon, and the variant shown wherever a message is: the email's
X-Automator-Variant header, `queue list`, and the console's message page."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from automator.emails import build_email
from automator.engine import Engine
from automator.errors import UnsafeHeaderError
from automator.importing import ContactRecord, EventRecord, contact_data, event_key
from automator.project import Project, load_project
from automator.staged import EventData
from automator.store import Store
from automator.store import contacts as contact_store
from automator.store import events as event_store
from automator.testing import RecordingTransport
from tests.conftest import all_messages, utc
from tests.logins import add_accounts, client_for, log_in

CLICKED = utc("2026-11-20 02:00")  # 09:00 in Saigon: outside quiet hours
TICK = utc("2026-11-20 03:00")
CONTACTS = 300
B_SHARE = 0.3

PROMO_RULE = """\
id: promo_ab
stages: [awareness, consideration, conversion, retention, loyalty]
trigger: {event: promo_clicked}
send:
  variants:
    a: {template: promo_a}
    b:
      template: promo_b
      weight: 30
      coupon: {prefix: PROMOB, percent_off: 15, expires_in: 7d}
"""

JOURNEY_RULE = """\
id: welcome_ab
stages: [awareness, consideration, conversion, retention, loyalty]
trigger: {event: signed_up}
steps:
  - send: {template: promo_a}
  - delay: 2d
    send:
      variants:
        a: {template: promo_a}
        b: {template: promo_b}
  - delay: 3d
    send: {template: promo_a}
"""


def write_template(root: Path, name: str, words: str) -> None:
    folder = root / "email_templates" / name
    folder.mkdir()
    (folder / "subject.txt").write_text(words, encoding="utf-8")
    coupon = "{% if coupon is not none %}Code: {{ coupon.code }}{% else %}No code{% endif %}"
    (folder / "body.txt").write_text(
        f"{words}\n{coupon}\nUnsubscribe: {{{{ unsubscribe_url }}}}\n", encoding="utf-8"
    )
    (folder / "body.html").write_text(
        f"<p>{words}</p><p>{coupon}</p><a href='{{{{ unsubscribe_url }}}}'>Unsubscribe</a>",
        encoding="utf-8",
    )


@pytest.fixture(autouse=True)
def ab_project(project_dir: Path) -> Path:
    """The shipped project plus an A/B rule (b: 30 %, with a coupon of its own; a: the rest,
    without one), a journey whose second step is an A/B test, and their templates."""
    (project_dir / "rules" / "promo_ab.yaml").write_text(PROMO_RULE, encoding="utf-8")
    (project_dir / "rules" / "welcome_ab.yaml").write_text(JOURNEY_RULE, encoding="utf-8")
    write_template(project_dir, "promo_a", "Version A")
    write_template(project_dir, "promo_b", "Version B")
    return project_dir


def add_clickers(store: Store, project: Project, count: int, kind: str = "promo_clicked") -> None:
    """`count` contacts, in one batch, each with one event of type `kind` at CLICKED."""
    records = [
        ContactRecord.model_validate({"email": f"c{n:03d}@example.com", "stage": "consideration"})
        for n in range(count)
    ]
    rows = [contact_data(record, project.journey, project.settings.zone) for record in records]
    events = []
    for record in records:
        event = EventRecord.model_validate(
            {"id": f"{kind}-{record.email}", "type": kind, "email": record.email, "at": CLICKED.isoformat()}
        )
        events.append(EventData(event_key(event), event.type, event.email, event.at, event.properties))
    with store.session() as session:
        contact_store.upsert(session, rows, CLICKED)
        event_store.add(session, events, project.journey, CLICKED)


def run_split(project: Project, store: Store) -> tuple[list[Any], RecordingTransport]:
    """300 contacts click the promotion; one real tick queues and sends their messages."""
    add_clickers(store, project, CONTACTS)
    transport = RecordingTransport()
    engine = Engine(project, store, transport)
    try:
        asyncio.run(engine.tick(TICK))
    finally:
        engine.close()
    return [m for m in all_messages(store) if m.rule_id == "promo_ab"], transport


def variant_by_email(messages: list[Any]) -> dict[str, str]:
    return {message.email: message.variant for message in messages}


@pytest.fixture
def split(project: Project, store: Store) -> tuple[list[Any], RecordingTransport]:
    return run_split(project, store)


def test_each_contact_gets_the_variant_its_hash_chooses(split, project):
    messages, _ = split
    send = project.ruleset.get("promo_ab").send

    assert len(messages) == CONTACTS
    assert all(m.variant == send.choose("promo_ab", m.contact_id) for m in messages)
    assert {m.status for m in messages} == {"sent"}


def test_the_split_follows_the_weights_within_sampling_error(split):
    messages, _ = split
    counts = Counter(message.variant for message in messages)
    expected = CONTACTS * B_SHARE
    deviation = math.sqrt(CONTACTS * B_SHARE * (1 - B_SHARE))

    assert set(counts) == {"a", "b"}
    assert abs(counts["b"] - expected) <= 4 * deviation, counts


def test_a_fresh_database_gives_every_contact_the_same_variant_again(
    split, request, project_dir, environ, database_url
):
    first, _ = split
    if database_url.startswith("sqlite"):
        again_url = f"sqlite:///{project_dir / 'again.db'}"
    else:
        again_url = str(request.getfixturevalue("postgres_server").new_database())
    again = load_project(project_dir, {**environ, "AUTOMATOR_DATABASE_URL": again_url})
    store = again.open_store()
    try:
        second, _ = run_split(again, store)
    finally:
        store.dispose()

    assert variant_by_email(second) == variant_by_email(first)


def test_each_variant_sends_its_own_template_and_says_so_in_a_header(split):
    messages, transport = split
    sent = {str(email["To"]): email for email in transport.sent}

    assert len(sent) == CONTACTS
    for message in messages:
        email = sent[message.email]
        assert email["X-Automator-Variant"] == message.variant
        assert email["Subject"] == f"Version {message.variant.upper()}"
        assert f"Version {message.variant.upper()}" in email.get_body(("plain",)).get_content()


def test_only_the_variant_with_a_coupon_gets_a_code(split):
    messages, transport = split
    variant = variant_by_email(messages)

    for email in transport.sent:
        text = email.get_body(("plain",)).get_content()
        if variant[str(email["To"])] == "b":
            assert "Code: PROMOB" in text
        else:
            assert "No code" in text and "PROMOB" not in text


def test_a_second_tick_queues_nothing_more(split, project, store):
    messages, _ = split
    engine = Engine(project, store, RecordingTransport())
    try:
        asyncio.run(engine.tick(utc("2026-11-20 03:30")))
    finally:
        engine.close()

    assert variant_by_email([m for m in all_messages(store) if m.rule_id == "promo_ab"]) == (
        variant_by_email(messages)
    )


def test_queue_list_json_gives_each_message_its_variant_and_step(split, cli):
    messages, _ = split

    listed = json.loads(cli("queue", "list", "--json", "--limit", "1000").stdout)

    by_id = {row["id"]: row for row in listed}
    assert {(by_id[m.id]["variant"], by_id[m.id]["step"]) for m in messages} == {("a", 1), ("b", 1)}
    assert all(by_id[m.id]["variant"] == m.variant for m in messages)


def test_queue_list_shows_the_variant_beside_the_rule(split, cli):
    messages, _ = split
    listing = cli("queue", "list", "--limit", "1000").stdout.splitlines()
    shown = {line.split()[0]: line for line in listing[:-1]}

    for message in messages:
        assert f" promo_ab/{message.variant} " in shown[str(message.id)]


def test_a_message_without_variants_has_no_variant_anywhere(make_contact, make_event, tick, store, cli):
    make_contact("lan@example.com", stage="retention")
    make_event("order_placed", utc("2026-11-19 03:00"), id="ord-1", order_id="A-1", total=1, currency="VND")
    tick(TICK)

    [message] = [m for m in all_messages(store) if m.rule_id == "post_purchase_thank_you"]
    [listed] = [row for row in json.loads(cli("queue", "list", "--json").stdout) if row["id"] == message.id]
    assert (message.variant, listed["variant"], listed["step"]) == (None, None, 1)
    assert " post_purchase_thank_you " in cli("queue", "list").stdout


def test_the_header_refuses_a_variant_with_a_line_break():
    values: dict[str, Any] = {
        "sender": "Shop <hello@shop.example.com>",
        "to": "lan@example.com",
        "to_name": None,
        "subject": "Hi",
        "text": "t",
        "html": "<p>h</p>",
        "message_id": "<1@shop.example.com>",
        "rule_id": "promo_ab",
        "date": utc("2026-11-20 03:00"),
        "list_unsubscribe_url": "https://shop.example.com/unsubscribe",
    }

    with pytest.raises(UnsafeHeaderError, match="X-Automator-Variant"):
        build_email(**values, variant="b\r\nBcc: eve@example.com")
    assert "X-Automator-Variant" not in build_email(**values).parsed()
    assert build_email(**values, variant="b").parsed()["X-Automator-Variant"] == "b"


@pytest.fixture
def support(project, store, engine) -> Any:
    from automator.console import create_app

    add_accounts(store, TICK)
    client = client_for(create_app(project, store, clock=lambda: TICK, engine=engine))
    assert log_in(client, "sam").status_code == 303
    return client


def test_the_message_page_shows_the_variant_and_its_template(split, support):
    messages, _ = split
    chosen = next(message for message in messages if message.variant == "b")

    page = support.get(f"/messages/{chosen.id}").text

    assert "Variant: b" in page
    assert "<dt>Template</dt><dd>promo_b</dd>" in page
    assert "X-Automator-Variant" in page


def test_the_message_page_shows_the_step_of_a_journey(make_contact, make_event, tick, store, support):
    make_contact("lan@example.com")
    make_event("signed_up", CLICKED, id="signup-1")
    tick(TICK)

    [message] = [m for m in all_messages(store) if m.rule_id == "welcome_ab"]
    page = support.get(f"/messages/{message.id}").text

    assert "Step 1 of 3" in page
    assert "Variant:" not in page


def test_the_queue_page_shows_the_variant(split, support):
    page = support.get("/queue?rule=promo_ab").text

    assert "variant a" in page and "variant b" in page
