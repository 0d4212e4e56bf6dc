"""The engine delivering through the SMTP transport to a real SMTP server on 127.0.0.1
(aiosmtpd): every outcome, checked on what the server received and on each message's
status and history. Time moves by passing `now`; the transport's timeout is short."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from automator.engine import Engine, TickReport
from automator.project import Project, load_project
from automator.store import Store, messages, suppressions
from automator.store.messages import QueueFilter
from automator.tables import Message
from automator.transports.smtp import SmtpTransport
from automator.transports.smtp_settings import SmtpSettings
from tests.conftest import cart, utc
from tests.smtp_server import (
    REJECT_DATA_REPLY,
    REJECT_REPLY,
    TEMPFAIL_REPLY,
    LoopbackSmtpServer,
    ReceivedMessage,
)

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
CART_AT = utc("2026-11-20 03:00")
DUE = utc("2026-11-20 04:00")  # an hour after the cart: 11:00 in Ho Chi Minh City


def deliver(project: Project, store: Store, server: LoopbackSmtpServer, now: datetime) -> TickReport:
    """One engine tick at `now` through a fresh SMTP transport with a 0.5 s timeout."""

    async def run() -> TickReport:
        transport = SmtpTransport(SmtpSettings.from_url(server.url(timeout=0.5)))
        try:
            return await Engine(project, store, transport).tick(now)
        finally:
            await transport.close()

    return asyncio.run(run())


@pytest.fixture
def cart_reminder(make_contact: Callable[..., int], make_event: Callable[..., str]) -> None:
    """Lan left a cart at 03:00, so an abandoned-cart reminder is due at 04:00."""
    make_contact("lan@example.com", first_name="Lan")
    make_event("cart_updated", CART_AT, id="cart-1", **cart())


def message_id(received: ReceivedMessage) -> str:
    """The Message-ID as sent; Python's parser keeps the space of a folded header line."""
    return str(received.message["Message-ID"]).strip()


def the_message(store: Store) -> Message:
    with store.session() as session:
        [message] = messages.listing(session, QueueFilter())
    return message


def history(store: Store, message: Message) -> list[tuple[str, str]]:
    assert message.id is not None
    with store.session() as session:
        return [(line.status, line.reason) for line in messages.history(session, message.id)]


def suppression(store: Store, email: str) -> tuple[str, str] | None:
    with store.session() as session:
        found = suppressions.get(session, email)
    return None if found is None else (found.reason, found.note)


@pytest.mark.usefixtures("cart_reminder")
def test_an_accepted_message_arrives_and_is_marked_sent(project, store, smtp_server) -> None:
    report = deliver(project, store, smtp_server, DUE)

    [received] = smtp_server.messages
    message = the_message(store)
    assert report.rules["abandoned_cart"].sent == 1
    assert received.rcpt_tos == ["lan@example.com"]
    assert received.mail_from == "hello@shop.example.com"
    assert message_id(received) == message.message_id
    assert received.message["Subject"] == message.subject
    assert "List-Unsubscribe=One-Click" in received.message["List-Unsubscribe-Post"]
    assert "/unsubscribe?email=lan%40example.com&token=" in received.message["List-Unsubscribe"]
    assert (message.status, message.sent_at, message.attempts) == ("sent", DUE, 1)
    assert [status for status, _ in history(store, message)] == ["queued", "sending", "sent"]


@pytest.mark.usefixtures("cart_reminder")
def test_the_history_says_when_and_to_whom_a_message_was_sent(project, store, smtp_server) -> None:
    deliver(project, store, smtp_server, DUE)

    message = the_message(store)
    with store.session() as session:
        lines = messages.history(session, message.id or 0)
    assert [(line.status, line.reason, line.at, line.actor) for line in lines[1:]] == [
        ("sending", "sending", DUE, "automator"),
        ("sent", "sent to lan@example.com", DUE, "automator"),
    ]


@pytest.mark.usefixtures("cart_reminder")
@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_a_4xx_reply_keeps_the_message_queued_with_a_retry_time(project, store, smtp_server, stage) -> None:
    smtp_server.mode, smtp_server.fail_at = "tempfail", stage

    report = deliver(project, store, smtp_server, DUE)

    message = the_message(store)
    assert smtp_server.messages == []
    assert report.rules["abandoned_cart"].outcomes["retrying: delivery failed"] == 1
    assert message.status == "queued"
    assert DUE + timedelta(seconds=30) <= message.send_at <= DUE + timedelta(seconds=60)
    assert TEMPFAIL_REPLY.split(" ", 1)[1] in (message.last_error or "")
    status, reason = history(store, message)[-1]
    assert status == "queued"
    assert reason.startswith(f"attempt 1 failed, retry at {message.send_at.isoformat()}: ")
    assert "451" in reason
    assert suppression(store, "lan@example.com") is None


@pytest.mark.usefixtures("cart_reminder")
def test_a_deferred_message_is_sent_when_its_retry_time_comes(project, store, smtp_server) -> None:
    smtp_server.mode = "tempfail"
    deliver(project, store, smtp_server, DUE)
    retry_at = the_message(store).send_at
    smtp_server.mode = "accept"

    deliver(project, store, smtp_server, retry_at - timedelta(seconds=1))
    assert smtp_server.messages == []
    assert the_message(store).status == "queued"

    deliver(project, store, smtp_server, retry_at)

    message = the_message(store)
    [received] = smtp_server.messages
    assert message_id(received) == message.message_id
    assert (message.status, message.sent_at, message.attempts) == ("sent", retry_at, 2)
    assert [status for status, _ in history(store, message)] == [
        "queued",
        "sending",
        "queued",
        "sending",
        "sent",
    ]


@pytest.mark.usefixtures("cart_reminder")
def test_a_message_that_keeps_getting_4xx_fails_with_the_last_reply(
    project_dir: Path, environ, store, smtp_server
) -> None:
    toml = project_dir / "automator.toml"
    toml.write_text(toml.read_text().replace("[automator]\n", "[automator]\nretry_limit = 3\n"))
    project = load_project(project_dir, environ)
    smtp_server.mode, smtp_server.fail_at = "tempfail", "data"

    now = DUE
    for _ in range(3):
        deliver(project, store, smtp_server, now)
        now = the_message(store).send_at

    message = the_message(store)
    assert smtp_server.messages == []
    assert (message.status, message.attempts) == ("failed", 3)
    assert "451 4.3.0 try again later" in (message.last_error or "")
    status, reason = history(store, message)[-1]
    assert status == "failed"
    assert reason.startswith("gave up after 3 attempts: ")
    assert "451 4.3.0 try again later" in reason
    assert suppression(store, "lan@example.com") is None  # a 4xx says nothing about the address


@pytest.mark.usefixtures("cart_reminder")
@pytest.mark.parametrize(("stage", "reply"), [("rcpt", REJECT_REPLY)])
def test_a_5xx_reply_fails_the_message_and_suppresses_the_address(
    project, store, smtp_server, stage, reply
) -> None:
    smtp_server.mode, smtp_server.fail_at = "reject", stage

    report = deliver(project, store, smtp_server, DUE)

    message = the_message(store)
    assert smtp_server.messages == []
    assert report.rules["abandoned_cart"].outcomes["failed: rejected by server"] == 1
    assert (message.status, message.attempts) == ("failed", 1)
    assert reply in (message.last_error or "")
    status, reason = history(store, message)[-1]
    assert status == "failed"
    assert reason.startswith("rejected: ")
    assert reply in reason
    found = suppression(store, "lan@example.com")
    assert found is not None
    assert found[0] == "bounced"
    assert reply in found[1]


@pytest.mark.usefixtures("cart_reminder")
def test_a_5xx_for_the_message_fails_it_but_does_not_suppress_the_address(
    project, store, smtp_server
) -> None:
    smtp_server.mode, smtp_server.fail_at = "reject", "data"

    deliver(project, store, smtp_server, DUE)

    message = the_message(store)
    assert (message.status, message.attempts) == ("failed", 1)
    assert REJECT_DATA_REPLY in (message.last_error or "")
    assert suppression(store, "lan@example.com") is None  # the server refused this email, not Lan


@pytest.mark.usefixtures("cart_reminder")
def test_a_bounced_address_gets_nothing_more(project, store, smtp_server, make_event) -> None:
    smtp_server.mode = "reject"
    deliver(project, store, smtp_server, DUE)
    smtp_server.mode = "accept"
    make_event("cart_updated", DUE + timedelta(hours=1), id="cart-2", **cart("c2"))

    report = deliver(project, store, smtp_server, DUE + timedelta(hours=2))

    assert smtp_server.messages == []
    assert report.rules["abandoned_cart"].sent == 0
    with store.session() as session:
        statuses = sorted(m.status for m in messages.listing(session, QueueFilter()))
    assert statuses == ["failed", "suppressed"]


@pytest.mark.usefixtures("cart_reminder")
def test_a_dropped_connection_is_retried_and_then_delivered_once(project, store, smtp_server) -> None:
    smtp_server.mode = "drop"

    deliver(project, store, smtp_server, DUE)

    message = the_message(store)
    assert smtp_server.messages == []
    assert message.status == "queued"
    assert "dropped the connection" in (message.last_error or "")
    assert history(store, message)[-1][1].startswith("attempt 1 failed, retry at ")

    smtp_server.mode = "accept"
    deliver(project, store, smtp_server, message.send_at)

    [received] = smtp_server.messages
    assert message_id(received) == message.message_id
    assert the_message(store).status == "sent"


@pytest.mark.usefixtures("cart_reminder")
def test_a_stalled_server_times_out_and_the_message_is_retried(project, store, smtp_server) -> None:
    smtp_server.mode, smtp_server.stall_seconds = "stall", 1.5

    deliver(project, store, smtp_server, DUE)

    message = the_message(store)
    assert message.status == "queued"
    assert "timed out" in (message.last_error or "")
    assert history(store, message)[-1][1].startswith("attempt 1 failed, retry at ")

    smtp_server.mode = "accept"
    deliver(project, store, smtp_server, message.send_at)

    assert the_message(store).status == "sent"
    # A server that takes the data but answers too late may keep a copy as well: at least
    # once, never under another Message-ID.
    assert smtp_server.messages
    assert {message_id(r) for r in smtp_server.messages} == {message.message_id}


@pytest.mark.usefixtures("cart_reminder")
def test_the_list_unsubscribe_header_arrives_as_plain_urls(project, store, smtp_server) -> None:
    deliver(project, store, smtp_server, DUE)

    [received] = smtp_server.messages
    assert (
        b"\r\nList-Unsubscribe: <https://shop.example.com/unsubscribe?email=lan%40example.com&token="
        in received.raw
    )
    assert (
        b"=?utf-8?"
        not in received.raw.split(b"\r\nList-Unsubscribe-Post:")[0].split(b"\r\nList-Unsubscribe:")[1]
    )


@pytest.mark.usefixtures("cart_reminder")
def test_the_message_id_header_arrives_on_one_line(project, store, smtp_server) -> None:
    deliver(project, store, smtp_server, DUE)

    [received] = smtp_server.messages
    assert f"\r\nMessage-ID: {the_message(store).message_id}\r\n".encode() in received.raw


def documented_log_lines() -> tuple[dict[str, str], str]:
    """operations.md's table of log lines (each message's fields, as written) and its section
    on the personal data in the log."""
    text = OPERATIONS.read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `([^`]+)` \| \w+ \| (.*) \|$", text, re.MULTILINE))
    personal = text.partition("### Personal data in the log")[2].partition("\n## ")[0]
    return table, personal


@pytest.mark.usefixtures("cart_reminder")
def test_the_recipients_address_in_the_log_of_a_failed_delivery_is_documented(
    project, store, smtp_server, caplog
) -> None:
    smtp_server.mode = "reject"
    with caplog.at_level(logging.INFO, logger="automator"):
        deliver(project, store, smtp_server, DUE)

    carrying = {
        record.getMessage(): [
            key for key, value in getattr(record, "fields", {}).items() if "lan@example.com" in str(value)
        ]
        for record in caplog.records
        if "lan@example.com" in f"{record.getMessage()} {getattr(record, 'fields', {})}"
    }
    table, personal = documented_log_lines()
    assert carrying == {"delivery failed": ["email", "error"]}
    assert all(f"`{key}`" in table["delivery failed"] for key in carrying["delivery failed"])
    assert "`delivery failed`" in personal
