"""`history:` and `contact.tags` conditions through a real tick: counts of an event type in a
window, "never", a tag one rule writes and another rule reads, and proof that they run inside
the rule's one lookup statement (EXISTS / COUNT subqueries), not contact by contact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import event

from automator.store import contacts
from tests.conftest import all_messages, utc, write_note_template

NOW = utc("2026-11-20 03:00")  # 10:00 in Saigon
CLICKED = utc("2026-11-20 02:30")
ALL_STAGES = "[awareness, consideration, conversion, retention, loyalty]"

RULES = {
    "repeat_buyers": "- history: {event: order_placed, within: 90d, count: {gte: 2}}",
    "never_ordered": "- history: {event: order_placed, count: 0}",
    "vips": "- contact.tags: {contains: vip}",
    "not_lost": "- contact.tags: {not_contains: [churned, blocked]}",
    "customers": "- contact.tags: {contains: customer}",
    "regulars": "- history: {event: order_placed, count: {gte: 2}}\n"
    "  - history: {event: order_placed, within: 30d, count: {lte: 2}}",
}


@pytest.fixture(autouse=True)
def condition_rules(project_dir: Path) -> None:
    """One rule per condition, each on its own event type (`<rule>_clicked`), all sending one
    small template."""
    for rule_id, condition in RULES.items():
        (project_dir / "rules" / f"{rule_id}.yaml").write_text(
            f"id: {rule_id}\nstages: {ALL_STAGES}\ntrigger: {{event: {rule_id}_clicked}}\n"
            f"when:\n  {condition}\nsend: {{template: note}}\n",
            encoding="utf-8",
        )
    write_note_template(project_dir)


@pytest.fixture
def order(make_event):
    count = iter(range(1, 1000))

    def place(email: str, at) -> None:
        n = next(count)
        make_event("order_placed", at, email=email, id=f"ord-{n}", order_id=f"A-{n}", total=1, currency="VND")

    return place


@pytest.fixture
def click(make_event):
    def send(rule_id: str, *emails: str) -> None:
        for email in emails:
            make_event(f"{rule_id}_clicked", CLICKED, email=email, id=f"{rule_id}-{email}")

    return send


@pytest.fixture
def tag(store):
    def add(email: str, *names: str) -> None:
        with store.session() as session:
            contact_id = contacts.ids_by_email(session, [email])[email]
            contacts.add_tags(session, [(contact_id, name) for name in names], NOW)

    return add


def messaged(store, rule_id: str) -> set[str]:
    return {message.email for message in all_messages(store) if message.rule_id == rule_id}


def test_history_count_within_a_window(make_contact, order, click, tick, store):
    for email in ("twice@example.com", "once@example.com", "twice_long_ago@example.com"):
        make_contact(email)
    order("twice@example.com", utc("2026-10-01 10:00"))
    order("twice@example.com", utc("2026-11-10 10:00"))
    order("once@example.com", utc("2026-11-10 10:00"))
    order("twice_long_ago@example.com", utc("2026-07-01 10:00"))  # 142 days before: outside 90d
    order("twice_long_ago@example.com", utc("2026-11-10 10:00"))
    click("repeat_buyers", "twice@example.com", "once@example.com", "twice_long_ago@example.com")

    tick(NOW)

    assert messaged(store, "repeat_buyers") == {"twice@example.com"}


def test_an_order_after_now_does_not_count(make_contact, order, click, tick, store):
    make_contact("later@example.com")
    order("later@example.com", utc("2026-11-10 10:00"))
    order("later@example.com", utc("2026-11-20 05:00"))  # after the tick's `now`
    click("repeat_buyers", "later@example.com")

    tick(NOW)

    assert messaged(store, "repeat_buyers") == set()


def test_history_count_zero_means_never(make_contact, order, click, tick, store):
    make_contact("never@example.com")
    make_contact("ordered_long_ago@example.com")
    order("ordered_long_ago@example.com", utc("2024-01-01 10:00"))
    click("never_ordered", "never@example.com", "ordered_long_ago@example.com")

    tick(NOW)

    assert messaged(store, "never_ordered") == {"never@example.com"}


@pytest.mark.parametrize(
    "trigger",
    [
        '{schedule: "0 10 * * *"}',
        '{schedule: "0 10 * * *", timezone: contact}',
        "{every: 1d}",
        "{date: contact.birthday, yearly: true}",
        "{date: contact.renews_at, before: 1d}",
    ],
)
def test_history_works_with_every_trigger_kind(trigger, project_dir, make_contact, order, cli, store):
    """Each lookup binds the tick's time, which history conditions count back from."""
    (project_dir / "rules" / "lapsed.yaml").write_text(
        f"id: lapsed\nstages: {ALL_STAGES}\ntrigger: {trigger}\n"
        "when:\n  - history: {event: order_placed, within: 14d, count: 0}\nsend: {template: note}\n",
        encoding="utf-8",
    )
    for email, ordered in (
        ("lapsed@example.com", "2026-10-01 10:00"),
        ("recent@example.com", "2026-11-19 10:00"),
    ):
        make_contact(
            email,
            stage="retention",
            timezone="Asia/Ho_Chi_Minh",
            birthday="1990-11-20",
            renews_at="2026-11-21",
        )
        order(email, utc(ordered))

    result = cli("tick", "--now", NOW.isoformat(), "--json")

    assert result.exit_code == 0, result.output
    assert [rule["error"] for rule in json.loads(result.stdout)["rules"] if rule["rule"] == "lapsed"] == [
        None
    ]
    assert messaged(store, "lapsed") == {"lapsed@example.com"}


def test_two_history_conditions_on_one_event_type_both_hold(make_contact, order, click, tick, store):
    for email in ("two@example.com", "three_recent@example.com", "one@example.com"):
        make_contact(email)
    for at in ("2026-11-01 10:00", "2026-11-02 10:00"):
        order("two@example.com", utc(at))
    for at in ("2026-11-01 10:00", "2026-11-02 10:00", "2026-11-03 10:00"):
        order("three_recent@example.com", utc(at))
    order("one@example.com", utc("2026-11-01 10:00"))
    click("regulars", "two@example.com", "three_recent@example.com", "one@example.com")

    tick(NOW)

    assert messaged(store, "regulars") == {"two@example.com"}


def test_tags_contains(make_contact, tag, click, tick, store):
    make_contact("vip@example.com")
    make_contact("plain@example.com")
    make_contact("other_tag@example.com")
    tag("vip@example.com", "vip", "newsletter")
    tag("other_tag@example.com", "vipx")
    click("vips", "vip@example.com", "plain@example.com", "other_tag@example.com")

    tick(NOW)

    assert messaged(store, "vips") == {"vip@example.com"}


def test_tags_not_contains_a_list_means_none_of_them(make_contact, tag, click, tick, store):
    for email in ("churned@example.com", "blocked@example.com", "fine@example.com", "bare@example.com"):
        make_contact(email)
    tag("churned@example.com", "churned")
    tag("blocked@example.com", "blocked", "vip")
    tag("fine@example.com", "vip")
    click("not_lost", "churned@example.com", "blocked@example.com", "fine@example.com", "bare@example.com")

    tick(NOW)

    assert messaged(store, "not_lost") == {"fine@example.com", "bare@example.com"}


def test_a_tag_one_rule_writes_is_read_by_another(make_contact, order, click, tick, store, transport):
    make_contact("buyer@example.com", stage="retention")
    make_contact("browser@example.com", stage="retention")
    order("buyer@example.com", utc("2026-11-18 03:00"))
    tick(utc("2026-11-19 03:00"))  # the thank-you goes out; post_purchase_thank_you tags `customer`
    assert [str(email["To"]) for email in transport.sent] == ["buyer@example.com"]
    with store.session() as session:
        assert "customer" in contacts.tags(
            session, contacts.ids_by_email(session, ["buyer@example.com"])["buyer@example.com"]
        )
    click("customers", "buyer@example.com", "browser@example.com")

    tick(NOW)

    assert messaged(store, "customers") == {"buyer@example.com"}


def statements_of(store, run) -> list[str]:
    """Every SQL statement `run()` sends to the database."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize("contacts_count", [2, 20])
def test_conditions_are_subqueries_of_one_lookup_whatever_the_contacts(
    contacts_count, make_contact, order, tag, click, tick, store
):
    emails = [f"c{n}@example.com" for n in range(contacts_count)]
    for email in emails:
        make_contact(email)
        tag(email, "vip")
        order(email, utc("2026-11-01 10:00"))
        order(email, utc("2026-11-02 10:00"))
    click("repeat_buyers", *emails)
    click("vips", *emails)

    sent = statements_of(store, lambda: tick(NOW))

    # One lookup statement per rule, however many contacts: a COUNT subquery in each of
    # the two rules that count orders (repeat_buyers, regulars), and an EXISTS over
    # contact_tag in each of the three rules that test tags.
    history = [s for s in sent if "history_order_placed" in s and "count(*)" in s.lower()]
    tags = [s for s in sent if "contact_tag" in s and "EXISTS (SELECT" in s.upper()]
    assert len(history) == 2, history
    assert len(tags) == sum("contact.tags" in condition for condition in RULES.values()), tags
    assert all(statement.lstrip().upper().startswith("SELECT") for statement in history + tags)
    assert messaged(store, "repeat_buyers") == messaged(store, "vips") == set(emails)
