"""`automator explain`: for each reason a message goes or does not, explain's verdict, then
what a real tick at the same time does, which must agree."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from automator.store import coupons, suppressions

# The browser's fixtures, for the contact page's test; without Playwright it is skipped.
with contextlib.suppress(pytest.skip.Exception):
    from tests.test_console_accessibility import busy_day, chromium, console, page  # noqa: F401
from tests.conftest import all_messages, cart, utc, write_note_template

# The project's zone is Asia/Ho_Chi_Minh (UTC+7): quiet hours 21:00–08:00 are 14:00–01:00 UTC.
NUDGE = """\
id: nudge
stages: [consideration, conversion]
trigger:
  event: signed_up
  delay: 1h
  cancel_if: {event: newsletter_declined}
goal: {event: trial_started}
limit: {max: 1, per: 30d}
send: {template: note}
"""


def explained(cli: Any, rule: str, now: str, email: str = "lan@example.com") -> dict[str, Any]:
    result = cli("explain", rule, "--contact", email, "--now", now, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def failed(explanation: dict[str, Any]) -> list[str]:
    return [check["check"] for check in explanation["checks"] if check["passed"] is False]


@pytest.fixture
def nudge(project_dir):
    write_note_template(project_dir)
    (project_dir / "rules" / "nudge.yaml").write_text(NUDGE, encoding="utf-8")


def test_explain_says_a_due_cart_would_queue_now_and_the_tick_sends_it(
    cli, make_contact, make_event, tick, store
):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart())

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert (explanation["verdict"], explanation["reason"], failed(explanation)) == ("would queue now", "", [])
    assert [m.status for m in all_messages(store)] == ["sent"]


def test_explain_names_the_stage_when_the_contact_is_not_in_it(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart())
    make_contact(stage="loyalty")

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert explanation["verdict"] == "not eligible"
    assert failed(explanation)[0] == "stage"
    assert explanation["reason"] == "stage: loyalty"
    assert all_messages(store) == []


def test_explain_reads_the_stage_the_contact_was_in_then(cli, make_contact, make_event):
    make_contact(_now=utc("2026-11-19 00:00"))
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart())
    make_contact(stage="loyalty", _now=utc("2026-11-21 00:00"))

    then = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    later = explained(cli, "abandoned_cart", "2026-11-21T03:30:00Z")

    [stage] = [check for check in then["checks"] if check["check"] == "stage"]
    assert (stage["passed"], stage["saw"]) == (True, "consideration (in loyalty since)")
    assert failed(later)[0] == "stage"


def test_explain_shows_a_false_condition_with_the_value_it_saw(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart(total=0))

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    [condition] = [c for c in explanation["checks"] if c["check"] == "when event.total"]
    assert (condition["passed"], condition["saw"], condition["expected"]) == (False, "0", "gt 0")
    assert explanation["verdict"] == "not eligible"
    assert all_messages(store) == []


def test_explain_without_a_trigger_event(cli, make_contact, tick, store):
    make_contact()

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert failed(explanation) == ["trigger"]
    assert explanation["reason"] == "trigger: no cart_updated event by 2026-11-20 03:30Z"
    assert all_messages(store) == []


def test_explain_says_not_yet_due_with_the_due_time(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 03:00"), **cart())

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert (explanation["verdict"], explanation["reason"]) == ("not yet due", "due at 2026-11-20 04:00Z")
    assert all_messages(store) == []


def test_explain_says_too_late_past_max_lateness(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-17 02:00"), **cart())

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert explanation["verdict"] == "not eligible"
    assert explanation["reason"].startswith("too late: due at 2026-11-17 03:00Z")
    assert all_messages(store) == []


def test_explain_names_the_cancelling_event(cli, nudge, make_contact, make_event, tick, store):
    make_contact()
    make_event("signed_up", utc("2026-11-20 02:00"), id="s1")
    make_event("newsletter_declined", utc("2026-11-20 02:30"), id="n1")

    explanation = explained(cli, "nudge", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert explanation["verdict"] == "not eligible"
    declined = "newsletter_declined at 2026-11-20 02:30Z (n1)"
    assert explanation["reason"] == f"cancel_if newsletter_declined: {declined}"
    assert [m for m in all_messages(store) if m.rule_id == "nudge"] == []


def test_explain_says_the_goal_was_reached(cli, nudge, make_contact, make_event, tick, store):
    make_contact()
    make_event("signed_up", utc("2026-11-20 02:00"), id="s1")
    make_event("trial_started", utc("2026-11-20 02:30"), id="t1")

    explanation = explained(cli, "nudge", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert explanation["reason"].startswith("goal trial_started: trial_started at 2026-11-20 02:30Z")
    assert [m for m in all_messages(store) if m.rule_id == "nudge"] == []


def test_explain_counts_the_limit(cli, nudge, make_contact, make_event, tick, store):
    make_contact()
    make_event("signed_up", utc("2026-11-20 02:00"), id="s1")
    tick(utc("2026-11-20 03:30"))
    make_event("signed_up", utc("2026-11-22 02:00"), id="s2")

    explanation = explained(cli, "nudge", "2026-11-22T03:30:00Z")
    tick(utc("2026-11-22 03:30"))

    assert explanation["verdict"] == "not eligible"
    assert explanation["reason"].startswith("limit: 1 in the 30d before 2026-11-22 03:00Z")
    nudges = sorted((m.occurrence, m.status) for m in all_messages(store) if m.rule_id == "nudge")
    assert nudges == [("s1", "sent"), ("s2", "skipped")]


def test_explain_counts_only_the_journeys_in_the_limits_span_before_the_due_time(
    cli, nudge, make_contact, make_event, tick
):
    make_contact()
    make_event("signed_up", utc("2026-11-25 02:00"), id="s3")
    tick(utc("2026-11-25 03:30"))
    make_event("signed_up", utc("2026-11-22 02:00"), id="s2")

    explanation = explained(cli, "nudge", "2026-11-22T03:30:00Z")  # looking back, before s3

    [check] = [check for check in explanation["checks"] if check["check"] == "limit"]
    assert (check["passed"], check["saw"]) == (True, "0 in the 30d before 2026-11-22 03:00Z")


def test_explain_after_the_tick_names_the_message_sent(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart())
    tick(utc("2026-11-20 03:30"))
    [message] = all_messages(store)

    explanation = explained(cli, "abandoned_cart", "2026-11-20T04:00:00Z")

    assert explanation["verdict"] == "sent"
    assert explanation["reason"] == f"message {message.id} at 2026-11-20 03:30Z"


def test_explain_as_of_a_time_before_the_send_says_what_was_so_then(
    cli, make_contact, make_event, tick, store
):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart())
    tick(utc("2026-11-20 03:30"))
    [message] = all_messages(store)

    before_the_tick = explained(cli, "abandoned_cart", "2026-11-20T03:10:00Z")

    assert before_the_tick["verdict"] == "would queue now"  # message 1 was queued at 03:30
    assert message.sent_at == utc("2026-11-20 03:30")


def test_explain_says_a_queued_message_that_will_be_cancelled_will_not_go(
    cli, make_contact, make_event, tick, store
):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 13:00"), **cart())
    tick(utc("2026-11-20 15:00"))  # queued: it waits for the quiet hours to end at 01:00Z
    make_event("order_placed", utc("2026-11-20 18:00"), id="order-1", order_id="A1", total=10, currency="USD")

    explanation = explained(cli, "abandoned_cart", "2026-11-20T18:30:00Z")
    preview = cli(
        "preview", "abandoned_cart", "--contact", "lan@example.com", "--now", "2026-11-20T18:30:00Z"
    )
    tick(utc("2026-11-21 01:00"))

    [message] = all_messages(store)
    assert explanation["verdict"] == "not eligible"
    assert explanation["reason"].startswith(
        f"message {message.id}, to go at 2026-11-21 01:00Z, but cancel_if "
    )
    assert explanation["reason"].endswith(": it will not go")
    assert preview.exit_code == 1
    assert message.status == "cancelled"


def test_explain_says_a_held_message_goes_out_once_released(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 13:00"), **cart())
    tick(utc("2026-11-20 15:00"))  # queued: it waits for the quiet hours to end at 01:00Z
    [message] = all_messages(store)
    held = cli(
        "queue", "hold", str(message.id), "--reason", "she asked us to wait", "--now", "2026-11-20T16:00:00Z"
    )
    assert held.exit_code == 0, held.output

    before = explained(cli, "abandoned_cart", "2026-11-20T15:30:00Z")
    after = explained(cli, "abandoned_cart", "2026-11-20T16:30:00Z")
    preview = cli(
        "preview", "abandoned_cart", "--contact", "lan@example.com", "--now", "2026-11-20T16:30:00Z"
    )

    assert (before["verdict"], before["reason"]) == (
        "queued",
        f"message {message.id}, to go at 2026-11-21 01:00Z (held at 2026-11-20 16:00Z)",
    )
    assert (after["verdict"], after["reason"]) == (
        "held",
        f"message {message.id}: she asked us to wait; it goes out once released",
    )
    assert preview.exit_code == 1
    assert "would not get it: held (message" in preview.stderr


def test_explain_says_a_suppressed_address_gets_nothing(cli, make_contact, make_event, tick, store):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart())
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "unsubscribed", "", utc("2026-11-19 00:00"))

    explanation = explained(cli, "abandoned_cart", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    assert (explanation["verdict"], explanation["reason"]) == ("not eligible", "address is suppressed")
    assert [m.status for m in all_messages(store)] == ["suppressed"]


def test_explain_says_the_message_waits_for_quiet_hours(
    cli, make_contact, make_event, tick, store, transport
):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 13:00"), **cart())

    explanation = explained(cli, "abandoned_cart", "2026-11-20T15:00:00Z")
    tick(utc("2026-11-20 15:00"))

    assert explanation["verdict"] == "would queue now"
    assert explanation["reason"] == (
        "waits for the quiet hours to end (22:00 in Asia/Ho_Chi_Minh; they end at 2026-11-21 01:00Z)"
    )
    [message] = all_messages(store)
    assert (message.status, message.send_at, transport.sent) == ("queued", utc("2026-11-21 01:00"), [])


def test_explain_says_the_message_waits_for_the_frequency_cap(cli, make_contact, make_event, tick, store):
    make_contact()
    for number, hour in ((1, 2), (2, 4)):
        make_event("cart_updated", utc(f"2026-11-20 0{hour}:00"), **cart(f"c{number}"))
        tick(utc(f"2026-11-20 0{hour + 1}:30"))
    make_event("cart_updated", utc("2026-11-20 06:00"), **cart("c3"))

    explanation = explained(cli, "abandoned_cart", "2026-11-20T07:30:00Z")
    tick(utc("2026-11-20 07:30"))

    assert explanation["verdict"] == "would queue now"
    assert explanation["reason"].startswith("waits for the frequency cap until 2026-11-21 03:30Z")
    assert sorted(m.status for m in all_messages(store)) == ["queued", "sent", "sent"]


@pytest.mark.parametrize("codes", [0, 1])
def test_explain_says_an_offer_is_held_while_its_coupon_pool_is_empty(codes, cli, make_contact, tick, store):
    # The renewal offer goes 30 days before renews_at and takes a code from the pool
    # `renewal`; with none free it is held (`when_empty: hold`).
    make_contact(stage="retention", renews_at="2026-12-20T03:00:00Z", _now=utc("2026-11-01 00:00"))
    with store.session() as session:
        coupons.import_pool(
            session, "renewal", [f"RENEW-{n}" for n in range(codes)], 15, None, utc("2026-11-01 00:00")
        )

    explanation = explained(cli, "renewal_offer", "2026-11-20T03:30:00Z")
    tick(utc("2026-11-20 03:30"))

    [coupon] = [check for check in explanation["checks"] if check["check"] == "coupon"]
    [message] = all_messages(store)
    if codes:
        assert (explanation["verdict"], coupon["passed"]) == ("would queue now", True)
        assert coupon["saw"] == "1 free code(s) in pool 'renewal'"
        assert message.status == "sent"
    else:
        assert (explanation["verdict"], explanation["reason"]) == (
            "would be held",
            "coupon pool 'renewal' has no free code",
        )
        assert (message.status, message.hold_kind) == ("held", "coupon")


def test_explain_prints_one_line_per_check_and_the_verdict(cli, make_contact, make_event):
    make_contact()
    make_event("cart_updated", utc("2026-11-20 02:00"), **cart(total=0))

    result = cli("explain", "abandoned_cart", "--contact", "lan@example.com", "--now", "2026-11-20T03:30:00Z")

    assert result.exit_code == 0, result.output
    assert "  ✗ when event.total: 0  (expected gt 0)" in result.output
    assert "  ✓ stage: consideration" in result.output
    assert result.output.rstrip().splitlines()[-1] == "verdict: not eligible: when event.total: 0"


@pytest.mark.parametrize(
    ("rule", "email", "named"),
    [
        ("no_such_rule", "lan@example.com", "no rule 'no_such_rule'"),
        ("abandoned_cart", "x@example.com", "no contact with email x@example.com"),
    ],
)
def test_explain_an_unknown_rule_or_contact_exits_2(cli, make_contact, rule, email, named):
    make_contact()

    result = cli("explain", rule, "--contact", email)

    assert result.exit_code == 2
    assert named in result.output


# The console's contact page: "Why not?" for each rule, in Chromium, checked by axe-core with
# the accessibility tests' console (a busy day of the shop), browser and page.
@pytest.mark.sqlite_only
def test_the_contact_page_explains_each_rule_escaped_keyboard_reachable_and_accessible(
    request, make_event, store
):
    a11y = pytest.importorskip("tests.test_console_accessibility")
    console = request.getfixturevalue("console")
    page = request.getfixturevalue("page")
    make_event("cart_updated", utc("2026-11-20 14:10"), id="<b>cart-2</b>", **cart("c2"))
    a11y.log_in_as(page, console, "ada")
    [lan] = a11y._messages(store, "lan@example.com")
    page.goto(f"{console}/contacts/{lan.contact_id}")

    summary = page.locator("details summary", has_text="abandoned_cart")
    summary.focus()
    page.keyboard.press("Enter")

    checks = page.locator("details[open] ol.checks")
    # In the viewer's zone, the project's: 14:10 UTC is 21:10 in Saigon.
    a11y.expect(checks).to_contain_text("trigger: cart_updated at 2026-11-20 21:10 (key <b>cart-2</b>)")
    a11y.expect(summary).to_contain_text("abandoned_cart: not yet due (due at 2026-11-20 22:10)")
    assert page.locator("ol.checks b", has_text="cart-2").count() == 0  # shown as text, not as markup
    assert a11y.violations(page) == []
