"""`automator check --store` against what the database holds: an event type a rule names
that no stored event has (a misspelling, most often) is a warning naming the rule's file,
line and field, with the stored type it is closest to; so is a locale contacts have that a
template has no version in."""

from typing import Any

import pytest
from sqlalchemy import event

from automator.store import vocabulary
from tests.conftest import REPO, cart, utc
from tests.test_check_cli import edit

# The event types the shipped rules name.
SHIPPED_TYPES = ("cart_updated", "order_placed", "subscription_started", "subscription_renewed")


@pytest.fixture
def stored_events(make_event) -> None:
    """An event of each type the shipped rules name, with what their templates read."""
    make_event("cart_updated", utc("2026-11-20 10:00"), **cart())
    make_event("order_placed", utc("2026-11-20 11:00"), order_id="o1", total=90, currency="VND")
    make_event("subscription_started", utc("2026-11-20 12:00"))
    make_event("subscription_renewed", utc("2026-11-20 13:00"))


def test_the_shipped_rules_name_only_stored_event_types(cli, stored_events):
    assert cli("check", "--store").stdout == "ok: 4 rules\n"


def test_the_shipped_project_declares_the_renewal_that_has_not_happened_yet(cli, make_event):
    make_event("cart_updated", utc("2026-11-20 10:00"), **cart())  # as in the demo: no renewal yet
    make_event("order_placed", utc("2026-11-20 11:00"), order_id="o1", total=90, currency="VND")
    make_event("subscription_started", utc("2026-11-20 12:00"))
    assert cli("check", "--store").stdout == "ok: 4 rules\n"


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "meant"),
    [
        ("abandoned_cart", "event: cart_updated", "event: cart_update", "trigger.event", "cart_updated"),
        (
            "abandoned_cart",
            "cancel_if: {event: order_placed}",
            "cancel_if: {event: order_place}",
            "trigger.cancel_if.event",
            "order_placed",
        ),
        (
            "abandoned_cart",
            "cancel_if: {event: order_placed}",
            "cancel_if:\n    - {event: subscription_started}\n    - {event: order_place}",
            "trigger.cancel_if.1.event",
            "order_placed",
        ),
        (
            "renewal_offer",
            "goal: {event: subscription_renewed",
            "goal: {event: subscription_renew",
            "goal.event",
            "subscription_renewed",
        ),
        (
            "renewal_offer",
            "send:",
            "when:\n  - history: {event: order_place, count: {gte: 2}}\nsend:",
            "when.0.history.event",
            "order_placed",
        ),
    ],
    ids=["trigger", "cancel_if", "cancel_if-list", "goal", "history"],
)
def test_a_misspelt_event_type_is_named_with_the_stored_type_it_is_close_to(
    cli, project_dir, stored_events, file, old, new, field, meant
):
    typed = new.rpartition("event: ")[2].split("}")[0].split(",")[0]
    line = edit(project_dir / "rules" / f"{file}.yaml", old, new) + new[: new.index(typed)].count("\n")

    result = cli("check", "--store")

    assert (result.exit_code, result.stdout) == (
        0,
        f"warning: rules/{file}.yaml:{line}: {field}: no event in the store has type '{typed}' "
        f"(did you mean '{meant}'?)\n"
        "ok: 4 rules\n",
    )


def test_an_event_type_like_no_stored_one_is_named_alone(cli, project_dir, stored_events):
    line = edit(
        project_dir / "rules" / "abandoned_cart.yaml", "event: cart_updated", "event: wishlist_shared"
    )

    assert cli("check", "--store").stdout == (
        f"warning: rules/abandoned_cart.yaml:{line}: trigger.event: "
        "no event in the store has type 'wishlist_shared'\n"
        "ok: 4 rules\n"
    )


def test_an_event_type_declared_in_the_settings_is_not_named(cli, project_dir, stored_events):
    edit(project_dir / "rules" / "abandoned_cart.yaml", "event: cart_updated", "event: wishlist_shared")
    settings = project_dir / "automator.toml"
    settings.write_text(
        settings.read_text(encoding="utf-8")
        + '\n[events.wishlist_shared]\nproperties = ["cart_id", "items", "currency", "total", "cart_url"]\n',
        encoding="utf-8",
    )

    assert cli("check", "--store").stdout == "ok: 4 rules\n"


def test_a_store_without_events_says_nothing_of_event_types(cli, project_dir, make_contact):
    make_contact("lan@example.com")
    edit(project_dir / "rules" / "abandoned_cart.yaml", "event: cart_updated", "event: cart_update")

    assert cli("check", "--store").stdout == "ok: 4 rules\n"


TEMPLATES = sorted(path.name for path in (REPO / "email_templates").iterdir() if path.is_dir())


def test_a_locale_no_template_has_a_version_in_is_counted_once_per_template(cli, make_contact):
    for number, locale in enumerate(["fr", "fr", "fr-CA", "vi-VN", "en-GB", "EN", None]):
        make_contact(f"c{number}@example.com", locale=locale)

    assert cli("check", "--store").stdout.splitlines() == [
        *(
            f"warning: email_templates/{name}: {have} locale '{locale}', which has no version here; "
            "they get the 'en' one"
            for name in TEMPLATES
            for have, locale in (("2 contacts have", "fr"), ("1 contact has", "fr-CA"))
        ),
        "ok: 4 rules",
    ]


def test_a_template_with_a_version_in_the_locale_is_not_named(cli, project_dir, make_contact):
    make_contact("lan@example.com", locale="fr")
    for name in TEMPLATES[1:]:
        folder = project_dir / "email_templates" / name
        (folder / "subject.fr.txt").write_text((folder / "subject.txt").read_text(encoding="utf-8"))

    assert cli("check", "--store").stdout.splitlines() == [
        f"warning: email_templates/{TEMPLATES[0]}: 1 contact has locale 'fr', which has no version here; "
        "they get the 'en' one",
        "ok: 4 rules",
    ]


@pytest.mark.sqlite_only
def test_the_stored_event_types_are_read_through_the_type_index(store, stored_events):
    """A lookup per type in the index that leads with it, never a scan of every event."""
    executed: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        executed.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    with store.session() as session:
        found = vocabulary.event_types(session)
        plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + executed[-1]).all()
    event.remove(store.engine, "before_cursor_execute", record)

    assert found == set(SHIPPED_TYPES)
    details = [str(row[-1]) for row in plan if "event " in f"{row[-1]} "]
    assert details and all("USING COVERING INDEX ix_event_type_at_contact" in d for d in details), details
