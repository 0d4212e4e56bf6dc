"""What support staff do from the command line: list, read, hold, release and cancel queued
messages; look a contact up; suppress addresses; preview a rule's email for a contact
without sending it."""

import json
from pathlib import Path

import pytest

from tests.conftest import cart, utc

# A cart left at 21:00 in Saigon is due at 22:00, inside quiet hours (21:00–08:00), so its
# reminder waits in the queue until 08:00 local (01:00 UTC the next day).
EVENING_CART = utc("2026-11-20 14:00")
EVENING_TICK = "2026-11-20T15:00:00Z"
MORNING_SEND = "2026-11-21T01:00:00+00:00"
VI_SUBJECT = "Bạn còn sản phẩm chưa thanh toán trong giỏ hàng"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def queue(cli, *filters: str) -> list[dict]:
    result = cli("queue", "list", "--json", *filters)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def history(cli, message_id: int) -> list[str]:
    shown = cli("queue", "show", str(message_id)).stdout
    return shown.split("History:\n", 1)[1].splitlines()


@pytest.fixture
def shopper(make_contact):
    """Lan, in Saigon, reading Vietnamese."""

    def make(email: str = "lan@example.com") -> str:
        make_contact(email, first_name="Lan", locale="vi", timezone="Asia/Ho_Chi_Minh")
        return email

    return make


@pytest.fixture
def queued(cli, shopper, make_event) -> int:
    """An abandoned-cart reminder waiting in the queue for the end of quiet hours; its id."""
    email = shopper()
    make_event("cart_updated", EVENING_CART, email=email, id="cart-1", **cart())
    assert cli("tick", "--now", EVENING_TICK).exit_code == 0
    (message,) = queue(cli)
    return message["id"]


@pytest.fixture
def sent(cli, shopper, make_event) -> int:
    """An abandoned-cart reminder already delivered (to the outbox); its id."""
    email = shopper()
    make_event("cart_updated", utc("2026-11-20 03:00"), email=email, id="cart-1", **cart())
    assert cli("tick", "--now", "2026-11-20T04:00:00Z").exit_code == 0
    (message,) = queue(cli)
    assert message["status"] == "sent"
    return message["id"]


# queue list


def test_a_reminder_due_in_quiet_hours_stays_queued_until_morning(cli, queued, project_dir):
    (message,) = queue(cli)
    assert (message["status"], message["send_at"]) == ("queued", MORNING_SEND)
    assert not (project_dir / "outbox").exists()


def test_the_json_listing_gives_what_support_needs(cli, queued):
    (message,) = queue(cli)
    assert {key: message[key] for key in ("id", "rule", "email", "status", "send_at", "subject")} == {
        "id": queued,
        "rule": "abandoned_cart",
        "email": "lan@example.com",
        "status": "queued",
        "send_at": MORNING_SEND,
        "subject": VI_SUBJECT,
    }


def test_the_text_listing_shows_one_line_per_message_and_a_count(cli, queued):
    lines = cli("queue", "list").stdout.splitlines()
    assert len(lines) == 2
    assert all(
        part in lines[0] for part in ("queued", "2026-11-21 01:00Z", "abandoned_cart", "lan@example.com")
    )
    assert lines[1] == "1 message"


def test_the_newest_message_is_listed_first(cli, queued, shopper, make_event):
    minh = shopper("minh@example.com")
    make_event("cart_updated", utc("2026-11-20 15:30"), email=minh, id="cart-2", **cart("c2"))
    cli("tick", "--now", "2026-11-20T16:30:00Z")
    assert [message["email"] for message in queue(cli)] == ["minh@example.com", "lan@example.com"]


def test_a_listing_cut_by_its_limit_says_how_many_more_match(cli, queued, shopper, make_event):
    for n in range(2, 5):
        email = shopper(f"shopper{n}@example.com")
        make_event("cart_updated", utc("2026-11-20 15:30"), email=email, id=f"cart-{n}", **cart(f"c{n}"))
    cli("tick", "--now", "2026-11-20T16:30:00Z")

    cut = cli("queue", "list", "--limit", "3").stdout.splitlines()
    whole = cli("queue", "list", "--limit", "4").stdout.splitlines()

    assert len(cut) == 4 and cut[-1] == "3 of 4 messages shown (--limit 3; raise it to see more)"
    assert len(whole) == 5 and whole[-1] == "4 messages"


def test_a_json_listing_cut_by_its_limit_says_so_on_stderr(cli, queued, shopper, make_event):
    for n in range(2, 4):
        email = shopper(f"shopper{n}@example.com")
        make_event("cart_updated", utc("2026-11-20 15:30"), email=email, id=f"cart-{n}", **cart(f"c{n}"))
    cli("tick", "--now", "2026-11-20T16:30:00Z")

    cut = cli("queue", "list", "--json", "--limit", "2")
    whole = cli("queue", "list", "--json", "--limit", "3")

    assert len(json.loads(cut.stdout)) == 2
    assert cut.stderr == "2 of 3 messages shown (--limit 2; raise it to see more)\n"
    assert len(json.loads(whole.stdout)) == 3 and whole.stderr == ""


@pytest.fixture
def two_rules(cli, shopper, make_event):
    """Lan has a queued cart reminder, Minh a queued thank-you for an order."""
    lan, minh = shopper("lan@example.com"), shopper("minh@example.com")
    make_event("cart_updated", EVENING_CART, email=lan, id="cart-1", **cart())
    make_event("order_placed", utc("2026-11-19 14:30"), email=minh, id="order-1", order_id="o1")
    cli("tick", "--now", EVENING_TICK)
    return {message["email"]: message["id"] for message in queue(cli)}


def test_the_listing_can_be_narrowed_to_one_rule(cli, two_rules):
    assert [m["email"] for m in queue(cli, "--rule", "post_purchase_thank_you")] == ["minh@example.com"]


def test_the_listing_can_be_narrowed_to_one_contact_whatever_the_case(cli, two_rules):
    assert [m["rule"] for m in queue(cli, "--contact", "LAN@Example.com")] == ["abandoned_cart"]


def test_the_listing_can_be_narrowed_to_one_status(cli, two_rules):
    cli("queue", "hold", str(two_rules["minh@example.com"]), "--reason", "checking the order")
    assert [m["email"] for m in queue(cli, "--status", "held")] == ["minh@example.com"]
    assert [m["email"] for m in queue(cli, "--status", "queued")] == ["lan@example.com"]


def test_an_unknown_status_is_one_readable_error(cli):
    result = cli("queue", "list", "--status", "waiting")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: --status must be one of queued, held, sending, sent, failed, cancelled, suppressed,"
        " skipped\n",
    )


# queue show


def test_show_gives_the_headers_of_the_message(cli, queued):
    shown = cli("queue", "show", str(queued)).stdout.splitlines()
    assert shown[0] == f"Message {queued}: queued"
    for header in (
        "From: Lotus Shop <hello@shop.example.com>",
        "To: lan@example.com",
        f"Subject: {VI_SUBJECT}",
        "X-Automator-Rule: abandoned_cart",
        f"Send-At: {MORNING_SEND}",
        "Locale: vi",
    ):
        assert header in shown


def test_show_prints_the_text_body_as_it_will_be_sent(cli, queued):
    shown = cli("queue", "show", str(queued)).stdout
    assert "Chào Lan," in shown
    assert "Tổng cộng: 1.250.000 ₫" in shown
    assert "<html" not in shown


def test_show_html_prints_the_html_body(cli, queued):
    assert '<html lang="vi">' in cli("queue", "show", str(queued), "--html").stdout


def test_show_tells_why_a_message_waits(cli, queued):
    assert any(f"queued; waits until {MORNING_SEND} (quiet hours)" in line for line in history(cli, queued))


def test_showing_an_unknown_message_is_one_readable_error(cli):
    result = cli("queue", "show", "999")
    assert (result.exit_code, result.stderr) == (1, "error: message 999 does not exist\n")


# hold, release, cancel


def test_a_queued_message_can_be_held_with_a_reason_and_actor_in_its_history(cli, queued):
    result = cli("queue", "hold", str(queued), "--reason", "customer called", "--by", "mai")
    assert (result.exit_code, result.stdout) == (0, f"message {queued} held\n")
    assert queue(cli)[0]["status"] == "held"
    last = history(cli, queued)[-1].split()
    assert last[1:] == ["held", "mai", "customer", "called"]


def test_the_cli_is_the_actor_when_nobody_is_named(cli, queued):
    cli("queue", "hold", str(queued), "--reason", "checking")
    assert history(cli, queued)[-1].split()[1:] == ["held", "cli", "checking"]


def test_a_held_message_can_be_released_back_to_the_queue(cli, queued):
    cli("queue", "hold", str(queued), "--reason", "checking")
    result = cli("queue", "release", str(queued), "--reason", "all good", "--by", "mai")
    assert (result.exit_code, result.stdout) == (0, f"message {queued} queued\n")
    assert queue(cli)[0]["status"] == "queued"
    assert history(cli, queued)[-1].split()[1:] == ["queued", "mai", "all", "good"]


def test_a_queued_message_can_be_cancelled(cli, queued):
    result = cli("queue", "cancel", str(queued), "--reason", "duplicate order", "--by", "mai")
    assert (result.exit_code, result.stdout) == (0, f"message {queued} cancelled\n")
    assert queue(cli)[0]["status"] == "cancelled"
    assert history(cli, queued)[-1].split()[1:] == ["cancelled", "mai", "duplicate", "order"]


def test_a_held_message_can_be_cancelled(cli, queued):
    cli("queue", "hold", str(queued), "--reason", "checking")
    assert cli("queue", "cancel", str(queued), "--reason", "spam").exit_code == 0
    assert queue(cli)[0]["status"] == "cancelled"


def test_a_cancelled_message_is_never_sent(cli, queued, project_dir):
    cli("queue", "cancel", str(queued), "--reason", "duplicate order")
    cli("tick", "--now", "2026-11-21T02:00:00Z")
    assert queue(cli)[0]["status"] == "cancelled"
    assert not (project_dir / "outbox").exists()


def test_a_held_message_is_not_sent_when_its_time_comes(cli, queued, project_dir):
    cli("queue", "hold", str(queued), "--reason", "checking")
    cli("tick", "--now", "2026-11-21T02:00:00Z")
    assert queue(cli)[0]["status"] == "held"
    assert not (project_dir / "outbox").exists()


HELD_AT = "2026-11-20T16:00:00Z"  # when the first action of a refusal below is taken
SENT_AT = "2026-11-20 04:00 UTC"  # when the `sent` fixture's message went out

# A person's action on a message it no longer applies to: the message (a fixture), the action
# taken on it first, the action refused, and what the refusal says happened first.
REFUSALS = {
    "a held message is not held again": (
        "queued", "hold", "hold", "was held at 2026-11-20 16:00 UTC, before your hold; nothing changed",
    ),
    "a queued message is not released": ("queued", None, "release", "is queued; nothing changed"),
    "a cancelled message is not cancelled again": (
        "queued", "cancel", "cancel",
        "was cancelled at 2026-11-20 16:00 UTC, before your cancel; nothing changed",
    ),
    "a cancelled message cannot be sent now": (
        "queued", "cancel", "send-now",
        "was cancelled at 2026-11-20 16:00 UTC, before your send now; "
        "only a queued or held message can be sent now",
    ),
    "a sent message cannot be cancelled": (
        "sent", None, "cancel",
        f"was sent at {SENT_AT}, before your cancel; only a queued or held message can be cancelled",
    ),
    "a sent message cannot be held": (
        "sent", None, "hold", f"was sent at {SENT_AT}, before your hold; only a queued message can be held",
    ),
    "a sent message cannot be released": (
        "sent", None, "release",
        f"was sent at {SENT_AT}, before your release; only a held message can be released",
    ),
    "a sent message cannot be sent now": (
        "sent", None, "send-now",
        f"was sent at {SENT_AT}, before your send now; only a queued or held message can be sent now",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("message", "first", "then", "answer"), REFUSALS.values(), ids=REFUSALS.keys())
def test_an_action_that_no_longer_applies_is_refused_with_what_happened_first(
    request, cli, message, first, then, answer
):
    message_id = request.getfixturevalue(message)
    if first:
        assert cli("queue", first, str(message_id), "--reason", "first", "--now", HELD_AT).exit_code == 0
    before = history(cli, message_id)

    result = cli("queue", then, str(message_id), "--reason", "then")

    assert (result.exit_code, result.stderr) == (1, f"error: message {message_id} {answer}\n")
    assert history(cli, message_id) == before  # a refusal leaves no trace


@pytest.mark.parametrize("action", ["hold", "release", "cancel", "send-now"])
def test_acting_on_an_unknown_message_is_one_readable_error(cli, action):
    result = cli("queue", action, "999", "--reason", "why")
    assert (result.exit_code, result.stderr) == (1, "error: message 999 does not exist\n")


def test_a_reason_is_required_to_act_on_a_message(cli, queued):
    assert cli("queue", "cancel", str(queued)).exit_code == 2
    assert queue(cli)[0]["status"] == "queued"


def test_a_template_error_holds_the_message_with_file_and_line_until_fixed_and_released(
    cli, shopper, make_event, project_dir
):
    body = project_dir / "email_templates" / "abandoned_cart" / "body.vi.txt"
    edit(body, 'Chào {{ contact.first_name or "bạn" }},', "Chào {{ contact.nickname }},")
    make_event("cart_updated", EVENING_CART, email=shopper(), id="cart-1", **cart())
    cli("tick", "--now", EVENING_TICK)
    (message,) = queue(cli)
    assert message["status"] == "held"
    assert any(
        "template error: email_templates/abandoned_cart/body.vi.txt:1: undefined:" in line
        and "nickname" in line
        for line in history(cli, message["id"])
    )
    early = cli("queue", "release", str(message["id"]), "--reason", "worth a try")
    assert (early.exit_code, queue(cli)[0]["status"]) == (1, "held")
    assert "still held: template error: email_templates/abandoned_cart/body.vi.txt:1" in early.stderr
    assert any(  # the person's attempt is in the history, with their reason
        " cli          not released: template error:" in line and line.endswith("(asked: worth a try)")
        for line in history(cli, message["id"])
    )
    edit(body, "Chào {{ contact.nickname }},", 'Chào {{ contact.first_name or "bạn" }},')
    assert cli("queue", "release", str(message["id"]), "--reason", "template fixed").exit_code == 0
    assert (queue(cli)[0]["status"], queue(cli)[0]["subject"]) == ("queued", VI_SUBJECT)


def test_releasing_an_offer_while_its_pool_is_still_empty_says_it_stays_held(cli, make_contact):
    make_contact("lan@example.com", stage="retention", renews_at="2026-12-20")
    cli("tick", "--now", "2026-11-20T03:00:00Z")
    (message,) = queue(cli)

    result = cli("queue", "release", str(message["id"]), "--reason", "try again")

    assert result.exit_code == 1
    assert result.stderr == f"error: message {message['id']} is still held: coupon pool 'renewal' is empty\n"
    assert queue(cli)[0]["status"] == "held"


def test_an_offer_held_for_an_empty_pool_goes_out_once_codes_arrive_and_it_is_released(
    cli, make_contact, tmp_path
):
    make_contact("lan@example.com", stage="retention", renews_at="2026-12-20")
    cli("tick", "--now", "2026-11-20T03:00:00Z")
    (message,) = queue(cli)
    assert message["status"] == "held"
    (tmp_path / "codes.csv").write_text("code\nRENEW-001\n", encoding="utf-8")
    cli("coupons", "import", "renewal", str(tmp_path / "codes.csv"))
    cli("queue", "release", str(message["id"]), "--reason", "pool refilled")
    assert "Coupon: RENEW-001" in cli("queue", "show", str(message["id"])).stdout
    assert queue(cli)[0]["status"] == "queued"


# contacts


def test_a_contact_is_shown_with_its_stage_history_suppression_and_messages(cli, sent):
    cli("suppressions", "add", "lan@example.com", "--reason", "unsubscribed", "--now", "2026-11-21T02:00:00Z")

    shown = cli("contacts", "show", "LAN@example.com").stdout.splitlines()

    assert shown[:6] == [
        "Contact lan@example.com (Lan)",
        "Stage: conversion since 2026-11-20 04:00Z",
        "Locale: vi",
        "Time zone: Asia/Ho_Chi_Minh",
        "Tags: cart_abandoner",
        "Suppressed: unsubscribed since 2026-11-21",
    ]
    assert "  2026-11-20 04:00Z  consideration -> conversion  (rule abandoned_cart (message 1))" in shown
    assert f"  {sent:>6}  sent       2026-11-20 04:00Z  abandoned_cart           {VI_SUBJECT}" in shown


def test_an_unknown_contact_is_one_readable_line(cli):
    result = cli("contacts", "show", "nobody@example.com")
    assert (result.exit_code, result.stderr) == (1, "error: no contact with email nobody@example.com\n")


# suppressions


def test_a_suppressed_address_is_listed_with_its_reason(cli):
    result = cli("suppressions", "add", "Lan@Example.com", "--reason", "unsubscribed")
    assert (result.exit_code, result.stdout) == (0, "suppressed lan@example.com (unsubscribed)\n")
    listed = cli("suppressions", "list").stdout.splitlines()
    assert listed[0].split("\t")[:2] == ["lan@example.com", "unsubscribed"]
    assert listed[-1] == "1 suppressed"


def test_suppressing_twice_says_so(cli):
    cli("suppressions", "add", "lan@example.com", "--reason", "bounced")
    result = cli("suppressions", "add", "lan@example.com", "--reason", "complained")
    assert (result.exit_code, result.stdout) == (0, "lan@example.com was already suppressed\n")


def test_a_suppression_can_be_removed(cli):
    cli("suppressions", "add", "lan@example.com", "--reason", "unsubscribed")
    result = cli("suppressions", "remove", "LAN@example.com")
    assert (result.exit_code, result.stdout) == (0, "removed suppression of lan@example.com\n")
    assert cli("suppressions", "list").stdout == "0 suppressed\n"


def test_a_bad_reason_is_one_readable_line(cli):
    result = cli("suppressions", "add", "lan@example.com", "--reason", "annoyed")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: --reason must be one of unsubscribed, bounced, complained, blocked\n",
    )
    assert "Traceback" not in result.output
    assert cli("suppressions", "list").stdout == "0 suppressed\n"


def test_suppressing_a_malformed_address_is_refused(cli):
    result = cli("suppressions", "add", "lan-at-example.com", "--reason", "blocked")
    assert result.exit_code == 1
    assert result.stderr.startswith('error: email "lan-at-example.com" is not valid')


def test_removing_an_address_that_is_not_suppressed_is_an_error(cli):
    result = cli("suppressions", "remove", "lan@example.com")
    assert (result.exit_code, result.stderr) == (1, "error: lan@example.com is not suppressed\n")


def test_a_suppressed_contact_gets_nothing(cli, shopper, make_event, project_dir):
    email = shopper()
    cli("suppressions", "add", email, "--reason", "unsubscribed")
    make_event("cart_updated", utc("2026-11-20 03:00"), email=email, id="cart-1", **cart())
    cli("tick", "--now", "2026-11-20T04:00:00Z")
    assert [m["status"] for m in queue(cli)] == ["suppressed"]
    assert not (project_dir / "outbox").exists()


# preview


@pytest.fixture
def cart_left(shopper, make_event) -> str:
    email = shopper()
    make_event(
        "cart_updated",
        EVENING_CART,
        email=email,
        id="cart-1",
        **{**cart(), "items": [{"name": "<b>Áo dài</b>", "quantity": 1, "price": 1_250_000}]},
    )
    return email


def test_preview_prints_the_subject_and_text_the_contact_would_get(cli, cart_left):
    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", EVENING_TICK)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Subject: {VI_SUBJECT}\n\nChào Lan,\n")
    assert "- <b>Áo dài</b> x 1: 1.250.000 ₫" in result.stdout


def test_preview_html_prints_the_escaped_html(cli, cart_left):
    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", EVENING_TICK, "--html")
    assert result.stdout.startswith(f"Subject: {VI_SUBJECT}\n\n<!DOCTYPE html>")
    assert "&lt;b&gt;Áo dài&lt;/b&gt;" in result.stdout


def test_preview_stores_and_sends_nothing(cli, cart_left, project_dir):
    cli("preview", "abandoned_cart", "--contact", cart_left, "--now", "2026-11-20T16:00:00Z")
    assert queue(cli) == []
    assert not (project_dir / "outbox").exists()


def test_preview_shows_a_sample_coupon_and_takes_no_code_from_the_pool(cli, make_contact, tmp_path):
    (tmp_path / "codes.csv").write_text("code\nRENEW-001\n", encoding="utf-8")
    cli("coupons", "import", "renewal", str(tmp_path / "codes.csv"))
    make_contact("lan@example.com", stage="retention", renews_at="2026-12-20")
    result = cli("preview", "renewal_offer", "--contact", "lan@example.com", "--now", "2026-11-20T03:00:00Z")
    assert "Renew now with code PREVIEW to get 15% off" in result.stdout
    assert cli("coupons", "list").stdout == "renewal\tfree 1\ttaken 0\n"


def test_previewing_an_unknown_rule_names_the_known_ones(cli, cart_left):
    result = cli("preview", "abandoned_kart", "--contact", cart_left)
    assert (result.exit_code, result.stderr) == (
        1,
        "error: no rule 'abandoned_kart' (rules: abandoned_cart, post_purchase_thank_you, "
        "renewal_offer, trial_ending)\n",
    )


def test_previewing_for_a_contact_without_the_trigger_event_is_an_error(cli, shopper):
    email = shopper()
    result = cli("preview", "abandoned_cart", "--contact", email, "--now", EVENING_TICK)
    assert (result.exit_code, result.stderr) == (
        1,
        "error: lan@example.com has no cart_updated event by 2026-11-20T15:00:00+00:00\n",
    )


def test_preview_only_sees_events_that_happened_by_now(cli, cart_left):
    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", "2026-11-20T13:00:00Z")
    assert result.exit_code == 1


def test_previewing_for_an_unknown_contact_is_an_error(cli):
    result = cli("preview", "abandoned_cart", "--contact", "nobody@example.com")
    assert (result.exit_code, result.stderr) == (1, "error: no contact with email nobody@example.com\n")


def test_a_date_rule_preview_needs_the_date_attribute(cli, make_contact):
    make_contact("lan@example.com", stage="retention")
    result = cli("preview", "renewal_offer", "--contact", "lan@example.com")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: lan@example.com has no date attribute renews_at\n",
    )


def test_a_malformed_now_is_one_readable_error(cli, cart_left):
    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", "tomorrow")
    assert (result.exit_code, result.stderr) == (
        1,
        'error: --now "tomorrow" is not an ISO 8601 time, e.g. 2026-11-20T11:00:00Z\n',
    )


def test_an_action_without_a_reason_is_refused(engine, make_contact, make_event, tick):
    from automator import support
    from automator.errors import AutomatorError
    from tests.conftest import cart, utc

    make_contact("lan@example.com", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 13:00"), id="evt-1", **cart())
    tick(utc("2026-11-20 14:30"))  # 21:30 in Ho Chi Minh City: waits for quiet hours to end
    with pytest.raises(AutomatorError, match="a reason is required"):
        support.hold(engine, 1, "  ", "agent", utc("2026-11-20 14:31"))


def test_send_now_skips_quiet_hours_and_is_audited(engine, store, make_contact, make_event, tick, transport):
    from automator import support
    from automator.store import audit
    from tests.conftest import cart, utc

    make_contact("lan@example.com", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 13:00"), id="evt-1", **cart())
    tick(utc("2026-11-20 14:30"))
    assert transport.sent == []
    support.send_now(engine, 1, "customer asked for the link", "agent", utc("2026-11-20 14:40"))
    tick(utc("2026-11-20 14:41"))
    assert len(transport.sent) == 1
    with store.session() as session:
        entries = audit.for_message(session, 1)
    assert [(e.actor, e.action, e.reason) for e in entries] == [
        ("agent", "send now", "customer asked for the link")
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "show", str(2**63)],
        ["queue", "hold", str(10**30), "--reason", "x"],
        ["queue", "cancel", "0", "--reason", "x"],
        ["queue", "list", "--limit", str(2**63)],
        ["queue", "list", "--limit", "-5"],
    ],
)
def test_a_number_beyond_any_rows_id_or_limit_is_a_usage_error(cli, args):
    result = cli(*args)

    assert result.exit_code == 2
    assert "Invalid value for" in result.output


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("x" * 501, "a reason has at most 500 characters (this one has 501)"),
        ("on hold\r\nstatus: sent", "a reason is one line of text"),
        ("\x1b[2Jall clear", "a reason is one line of text"),
    ],
)
def test_a_reason_is_one_line_of_text_of_limited_length(
    cli, store, make_contact, make_event, tick, reason, said
):
    from automator.store import messages

    make_contact("lan@example.com", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 13:00"), id="evt-1", **cart())
    tick(utc("2026-11-20 14:30"))

    result = cli("queue", "hold", "1", "--reason", reason, "--now", "2026-11-20T14:31:00Z")

    assert (result.exit_code, said in result.stderr) == (1, True)
    with store.session() as session:
        assert messages.get(session, 1).status == "queued"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["explain", "abandoned_cart", "--contact", "lan@example.com", "--now", "0001-01-01T00:00Z"],
            "--now",
        ),
        (["tick", "--now", "9999-12-31T23:59Z", "--force"], "--now"),
        (["simulate", "--from", "9999-12-31T00:00Z", "--days", "7"], "--from"),
    ],
)
def test_a_time_near_the_calendars_ends_is_refused_before_it_runs_off_it(cli, make_contact, args, said):
    make_contact("lan@example.com")

    result = cli(*args)

    assert result.exit_code == 1
    given = args[args.index(said) + 1]
    assert result.stderr == f'error: {said} "{given}" is not between the years 1900 and 9000\n'
