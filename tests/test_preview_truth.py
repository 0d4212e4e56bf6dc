"""`automator preview` says first whether the message would go out as of --now, and does
not render a message the contact would not get unless told to (--force)."""

from __future__ import annotations

import pytest

from tests.conftest import cart, utc

BIRTHDAY = """\
id: birthday
stages: [consideration]
trigger: {date: contact.birthday, yearly: true}
send: {template: bday}
"""


@pytest.fixture
def cart_left(make_contact, make_event) -> str:
    make_contact(first_name="Lan")
    make_event("cart_updated", utc("2026-11-20 02:00"), id="cart-1", **cart())
    return "lan@example.com"


def test_preview_says_the_message_would_go_out_then_renders_it(cli, cart_left):
    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", "2026-11-20T03:30:00Z")

    assert result.exit_code == 0, result.output
    assert result.stderr == "as of 2026-11-20 03:30 UTC: would queue now\n"
    assert result.stdout.startswith("Subject: ")


def test_preview_refuses_a_contact_who_already_ordered(cli, cart_left, make_event):
    make_event("order_placed", utc("2026-11-20 02:30"), id="order-1", order_id="o1", total=1_250_000)

    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", "2026-11-20T03:30:00Z")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "as of 2026-11-20 03:30 UTC: lan@example.com would not get it: not eligible: stage: retention\n"
    )
    assert "--force renders it anyway" in result.stderr


def test_preview_force_renders_what_would_not_go_out(cli, cart_left, make_event):
    make_event("order_placed", utc("2026-11-20 02:30"), id="order-1", order_id="o1", total=1_250_000)

    now = "2026-11-20T03:30:00Z"
    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", now, "--force")

    assert result.exit_code == 0, result.output
    assert "would not get it: not eligible: stage: retention" in result.stderr
    assert result.stdout.startswith("Subject: ")


def test_preview_of_a_message_already_sent_says_so(cli, cart_left, tick):
    tick(utc("2026-11-20 03:30"))

    result = cli("preview", "abandoned_cart", "--contact", cart_left, "--now", "2026-11-20T04:00:00Z")

    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("as of 2026-11-20 04:00 UTC: sent (message ")


def test_preview_without_now_says_it_used_the_current_time(cli, cart_left):
    result = cli("preview", "abandoned_cart", "--contact", cart_left)

    assert result.exit_code == 1
    too_late = "not eligible: too late: due at 2026-11-20 03:00Z"
    assert f" UTC (now): lan@example.com would not get it: {too_late}" in result.stderr


def test_a_yearly_rule_previews_this_years_date(cli, project_dir, make_contact):
    (project_dir / "rules" / "birthday.yaml").write_text(BIRTHDAY, encoding="utf-8")
    folder = project_dir / "email_templates" / "bday"
    folder.mkdir()
    (folder / "subject.txt").write_text("Happy birthday", encoding="utf-8")
    (folder / "body.txt").write_text("On {{ trigger.at.year }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "body.html").write_text("<a href='{{ unsubscribe_url }}'>x</a>", encoding="utf-8")
    make_contact(birthday="1990-11-20", timezone="UTC")

    result = cli("preview", "birthday", "--contact", "lan@example.com", "--now", "2026-11-20T03:00:00Z")

    assert result.exit_code == 0, result.output
    assert "On 2026\n" in result.stdout
