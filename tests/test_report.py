"""`automator report`: what each rule's messages led to — sent, bounced, unsubscribed, converted
by the rule's goal within its window, revenue per currency — and an A/B split's z-test."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from automator.results import compare, two_proportion_p
from automator.status import Status
from automator.store import Store, messages, suppressions
from automator.store.results import Outcome
from tests.conftest import cart, utc, write_note_template

CART_AT = utc("2026-11-20 02:00")  # 09:00 in Saigon: the reminder goes at 03:00, outside quiet hours
SENT_AT = utc("2026-11-20 03:00")

PROMO_RULE = """\
id: promo_ab
stages: [awareness, consideration, conversion, retention, loyalty]
trigger: {event: promo_clicked}
goal: {event: order_placed, within: 3d}
send:
  variants:
    a: {template: note}
    b: {template: note}
"""


def report(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("report", "--json", *args)
    assert result.exit_code == 0, result.output
    return {rule["rule"]: rule for rule in json.loads(result.output)["rules"]}


def put_message(
    store: Store,
    contact_id: int,
    email: str,
    rule: str = "abandoned_cart",
    status: str = Status.SENT,
    sent_at: datetime | None = SENT_AT,
    variant: str | None = None,
    step: int = 1,
) -> int:
    """A message as the engine leaves it once sent (or failed)."""
    values = {
        "rule_id": rule, "contact_id": contact_id, "email": email, "occurrence": f"{rule}-{email}-{step}",
        "occurred_at": CART_AT, "step": step, "variant": variant, "status": status, "priority": 0,
        "due_at": SENT_AT, "send_at": SENT_AT, "expires_at": SENT_AT + timedelta(days=1),
        "created_at": SENT_AT - timedelta(hours=1), "sent_at": sent_at if status == Status.SENT else None,
    }  # fmt: skip
    with store.session() as session:
        message_id = messages.enqueue(session, values, "queued by the test")
    assert message_id is not None
    return message_id


def test_a_cart_reminder_followed_by_an_order_counts_as_converted_with_its_revenue(
    make_contact, make_event, tick, cli
):
    make_contact("lan@example.com", stage="consideration", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", CART_AT, id="cart-1", **cart(total=1_250_000))
    tick(SENT_AT)
    make_event("order_placed", SENT_AT + timedelta(days=2), id="ord-1", order_id="A-1", total=1_250_000,
               currency="VND")  # fmt: skip

    cart_reminder = report(cli)["abandoned_cart"]

    assert cart_reminder["goal"] == "order_placed within 7d"
    assert cart_reminder["total"] | {"revenue": None} == {
        "step": None, "variant": None, "sent": 1, "bounced": 0, "unsubscribed": 0, "converted": 1,
        "conversion_rate": 1.0, "revenue": None, "clicks": 0,
    }  # fmt: skip
    assert cart_reminder["total"]["revenue"] == {"VND": 1_250_000}


def test_an_order_reported_twice_counts_its_revenue_once(make_contact, make_event, store, cli):
    contact = make_contact("lan@example.com")
    put_message(store, contact, "lan@example.com")
    order = {"order_id": "LS-5090", "total": 1_340_000, "currency": "VND"}
    make_event("order_placed", SENT_AT + timedelta(hours=1), id="evt-0195", **order)
    make_event("order_placed", SENT_AT + timedelta(hours=1, minutes=1), id="evt-0196", **order)
    make_event(
        "order_placed", SENT_AT + timedelta(hours=2), id="evt-0197", **{**order, "order_id": "LS-5091"}
    )

    total = report(cli)["abandoned_cart"]["total"]

    assert (total["converted"], total["revenue"]) == (1, {"VND": 2_680_000})  # LS-5090 once, LS-5091


def test_an_order_after_the_goal_window_does_not_count(make_contact, make_event, store, cli):
    contact = make_contact("lan@example.com")
    put_message(store, contact, "lan@example.com")
    make_event("order_placed", SENT_AT + timedelta(days=7, minutes=1), id="late", total=10, currency="USD")

    total = report(cli)["abandoned_cart"]["total"]

    assert (total["sent"], total["converted"], total["revenue"]) == (1, 0, {})


def test_revenue_is_summed_per_currency_and_put_down_to_the_last_message(
    make_contact, make_event, store, cli
):
    lan, grace = make_contact("lan@example.com"), make_contact("grace@example.com")
    put_message(store, lan, "lan@example.com")
    put_message(store, grace, "grace@example.com")
    put_message(store, grace, "grace@example.com", step=2, sent_at=SENT_AT + timedelta(hours=5))
    make_event("order_placed", SENT_AT + timedelta(hours=1), "lan@example.com", id="o1", total=1_340_000,
               currency="VND")  # fmt: skip
    make_event("order_placed", SENT_AT + timedelta(hours=2), "lan@example.com", id="o2", total=630_000,
               currency="VND")  # fmt: skip
    make_event("order_placed", SENT_AT + timedelta(hours=6), "grace@example.com", id="o3", total=98.5,
               currency="USD")  # fmt: skip

    rows = {row["step"]: row for row in report(cli)["abandoned_cart"]["rows"]}

    assert rows[1]["revenue"] == {"VND": 1_970_000}  # grace's order came after her step 2
    assert rows[2]["revenue"] == {"USD": 98.5}
    assert (rows[1]["converted"], rows[2]["converted"]) == (2, 1)  # both of grace's messages led to it


def test_bounced_and_unsubscribed_are_counted_for_the_message_before_them(make_contact, store, cli):
    lan, grace, noah = (make_contact(f"{name}@example.com") for name in ("lan", "grace", "noah"))
    put_message(store, lan, "lan@example.com")
    put_message(store, grace, "grace@example.com")
    put_message(store, grace, "grace@example.com", rule="trial_ending", sent_at=SENT_AT + timedelta(hours=2))
    put_message(store, noah, "noah@example.com", status=Status.FAILED)
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "unsubscribed", "link", SENT_AT + timedelta(hours=1))
        suppressions.add(session, "grace@example.com", "unsubscribed", "link", SENT_AT + timedelta(hours=3))

    found = report(cli)

    cart_total, trial_total = found["abandoned_cart"]["total"], found["trial_ending"]["total"]
    assert (cart_total["sent"], cart_total["bounced"], cart_total["unsubscribed"]) == (2, 1, 1)
    assert (trial_total["sent"], trial_total["unsubscribed"]) == (1, 1)  # grace's last message before it


@pytest.fixture
def promo(project_dir: Path) -> None:
    write_note_template(project_dir)
    (project_dir / "rules" / "promo_ab.yaml").write_text(PROMO_RULE, encoding="utf-8")


def test_variants_are_compared_with_a_z_test(promo, make_contact, make_event, store, cli):
    # a: 20 of 40 converted; b: 8 of 40.
    for number in range(80):
        email = f"c{number}@example.com"
        variant = "a" if number < 40 else "b"
        put_message(store, make_contact(email), email, rule="promo_ab", variant=variant)
        if number < 20 or 40 <= number < 48:
            make_event(
                "order_placed", SENT_AT + timedelta(days=1), email, id=f"o{number}", total=5, currency="USD"
            )

    promo_ab = report(cli, "--rule", "promo_ab")

    assert list(promo_ab) == ["promo_ab"]
    [test] = promo_ab["promo_ab"]["variant_tests"]
    assert (test["a"], test["b"], test["rate_a"], test["rate_b"]) == ("a", "b", 0.5, 0.2)
    assert test["difference"] == pytest.approx(-0.3)
    assert test["p_value"] == pytest.approx(0.00491, abs=1e-3)
    assert test["verdict"] == "a converts better than b (50.0 % vs 20.0 %), p = 0.005"
    text = cli("report", "--rule", "promo_ab").output
    assert "step 1: a converts better than b (50.0 % vs 20.0 %), p = 0.005" in text


def test_the_p_value_matches_the_normal_distribution():
    z = (0.12 - 0.08) / (0.1 * 0.9 * (2 / 1000)) ** 0.5
    assert two_proportion_p(120, 1000, 80, 1000) == pytest.approx(2 * (1 - NormalDist().cdf(z)), abs=1e-9)
    assert two_proportion_p(120, 1000, 80, 1000) == pytest.approx(0.00287, abs=1e-3)
    assert two_proportion_p(0, 50, 0, 50) == 1.0


def test_a_variant_with_fewer_than_30_sends_is_not_enough_data():
    test = compare(
        1, Outcome("r", 1, "a", sent=100, converted=50), Outcome("r", 1, "b", sent=12, converted=1)
    )
    assert test.verdict == "not enough data yet: fewer than 30 sends per variant (b has 12)"


def test_a_difference_that_chance_explains_is_not_enough_data():
    test = compare(
        1, Outcome("r", 1, "a", sent=100, converted=8), Outcome("r", 1, "b", sent=100, converted=12)
    )
    assert test.verdict == "not enough data yet: no clear difference (12.0 % vs 8.0 %, p = 0.346)"


def test_since_leaves_out_older_messages(make_contact, store, cli):
    contact = make_contact("lan@example.com")
    put_message(store, contact, "lan@example.com")

    assert report(cli, "--since", "2026-11-20T03:00:01Z")["abandoned_cart"]["total"]["sent"] == 0
    assert report(cli, "--since", "2026-11-20T03:00:00Z")["abandoned_cart"]["total"]["sent"] == 1
    assert (
        report(cli, "--since", "1d", "--now", "2026-11-21T02:00:00Z")["abandoned_cart"]["total"]["sent"] == 1
    )


def test_an_unknown_rule_is_an_error(cli):
    result = cli("report", "--rule", "abandoned_crat")
    assert result.exit_code == 1
    assert "--rule abandoned_crat: no rule has this id" in result.output


def test_sends_and_conversions_are_counted_per_day_for_the_chart(project, make_contact, make_event, store):
    from automator.store import results

    for number, day in enumerate((20, 20, 21)):
        email = f"c{number}@example.com"
        sent_at = utc(f"2026-11-{day} 03:00")
        put_message(store, make_contact(email), email, sent_at=sent_at)
        if number:
            make_event(
                "order_placed", sent_at + timedelta(hours=1), email, id=f"o{number}", total=1, currency="USD"
            )

    with store.session() as session:
        found = results.days(session, project.ruleset.rules)

    assert [(day.rule_id, day.day, day.sent, day.converted) for day in found] == [
        ("abandoned_cart", "2026-11-20", 2, 1),
        ("abandoned_cart", "2026-11-21", 1, 1),
    ]


def test_a_rule_without_a_goal_counts_no_conversions(make_contact, store, cli, project_dir):
    rule_file = project_dir / "rules" / "post_purchase_thank_you.yaml"
    kept = [line for line in rule_file.read_text().splitlines(keepends=True) if not line.startswith("goal:")]
    rule_file.write_text("".join(kept))
    contact = make_contact("lan@example.com")
    put_message(store, contact, "lan@example.com", rule="post_purchase_thank_you")

    text = cli("report", "--rule", "post_purchase_thank_you").output

    assert "post_purchase_thank_you  (no goal: conversions are not counted)" in text
    assert report(cli)["post_purchase_thank_you"]["total"]["converted"] is None
