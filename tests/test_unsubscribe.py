"""Unsubscribe links: the one-click POST of RFC 8058 with a signed token, through the daemon's
FastAPI app; a forged token changes nothing, a real one suppresses the contact."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from fastapi.testclient import TestClient

from automator import emails
from automator.engine import TickReport
from automator.project import Project
from automator.store import Store, messages, suppressions
from automator.testing import RecordingTransport
from automator.web import create_app
from tests.conftest import cart, utc

ONE_CLICK = {
    "content": "List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


@pytest.fixture
def client(project: Project, store: Store) -> TestClient:
    return TestClient(create_app(project, store, clock=lambda: utc("2026-11-20 05:00")))


def sent_link(
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
    tick: Callable[[datetime], TickReport],
    transport: RecordingTransport,
    email: str = "lan@example.com",
    **contact: Any,
) -> str:
    """Send `email` an abandoned-cart reminder; the path and query of its one-click link."""
    make_contact(email, **contact)
    make_event("cart_updated", utc("2026-11-20 03:00"), email=email, id=f"cart-{email}", **cart())
    tick(utc("2026-11-20 04:00"))
    [sent] = transport.to(email)
    header = str(sent["List-Unsubscribe"])
    https, mailto = re.findall(r"<([^>]+)>", header)
    assert mailto.startswith("mailto:hello@shop.example.com")
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = urlsplit(https)
    return f"{url.path}?{url.query}"


def suppression(store: Store, email: str) -> str | None:
    with store.session() as session:
        found = suppressions.get(session, email)
    return None if found is None else found.reason


def test_forged_token_is_refused_and_suppresses_nothing(make_contact, client, store) -> None:
    make_contact("lan@example.com")
    forged = "0" * 32

    response = client.post(f"/unsubscribe?email=lan%40example.com&token={forged}", **ONE_CLICK)

    assert response.status_code == 403
    assert "This unsubscribe link is not valid" in response.text
    assert suppression(store, "lan@example.com") is None


def test_a_token_made_for_another_address_is_refused(make_contact, client, store, project) -> None:
    make_contact("lan@example.com")
    minh_token = emails.unsubscribe_token(project.settings.secret, "minh@example.com")

    response = client.post(f"/unsubscribe?email=lan%40example.com&token={minh_token}", **ONE_CLICK)

    assert response.status_code == 403
    assert suppression(store, "lan@example.com") is None


@pytest.mark.parametrize("query", ["", "?email=lan%40example.com", "?token=abc", "?email=&token="])
def test_a_link_without_email_or_token_is_refused(make_contact, client, store, query) -> None:
    make_contact("lan@example.com")

    response = client.post(f"/unsubscribe{query}", **ONE_CLICK)

    assert response.status_code == 403
    assert suppression(store, "lan@example.com") is None


def test_a_token_with_non_ascii_characters_is_refused(make_contact, project, store) -> None:
    make_contact("lan@example.com")
    client = TestClient(create_app(project, store), raise_server_exceptions=False)

    response = client.post(f"/unsubscribe?email=lan%40example.com&token={quote('tôken')}", **ONE_CLICK)

    assert response.status_code == 403
    assert suppression(store, "lan@example.com") is None


def test_one_click_link_from_a_sent_email_unsubscribes_the_contact(
    make_contact, make_event, tick, transport, client, store
) -> None:
    link = sent_link(make_contact, make_event, tick, transport)

    response = client.post(link, **ONE_CLICK)

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert suppression(store, "lan@example.com") == "unsubscribed"


def test_clicking_twice_is_still_a_success(make_contact, make_event, tick, transport, client, store) -> None:
    link = sent_link(make_contact, make_event, tick, transport)
    client.post(link, **ONE_CLICK)

    again = client.post(link, **ONE_CLICK)

    assert again.status_code == 200
    assert suppression(store, "lan@example.com") == "unsubscribed"


def test_opening_the_link_asks_before_it_changes_anything(
    make_contact, make_event, tick, transport, client, store
) -> None:
    link = sent_link(make_contact, make_event, tick, transport)

    page = client.get(link)

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<form method="post">' in page.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert "Stop all marketing email to lan@example.com?" in page.text
    assert suppression(store, "lan@example.com") is None


def test_the_pages_speak_the_contacts_language(
    make_contact, make_event, tick, transport, client, store
) -> None:
    link = sent_link(make_contact, make_event, tick, transport, "hoa@example.com", locale="vi")

    asked = client.get(link)
    done = client.post(link, **ONE_CLICK)

    assert '<html lang="vi">' in asked.text
    assert "Ngừng nhận mọi email tiếp thị gửi tới hoa@example.com?" in asked.text
    assert '<button type="submit">Hủy đăng ký</button>' in asked.text
    assert "Bạn đã hủy đăng ký" in done.content.decode("utf-8")


def test_a_refusal_follows_the_browsers_language(client) -> None:
    response = client.get(
        "/unsubscribe?email=x%40example.com&token=nope", headers={"Accept-Language": "vi-VN,vi;q=0.9"}
    )

    assert response.status_code == 403
    assert "Liên kết hủy đăng ký không hợp lệ" in response.text


def test_the_address_on_the_page_is_escaped(client, project) -> None:
    address = '"<script>alert(1)</script>"@example.com'
    token = emails.unsubscribe_token(project.settings.secret, address)

    page = client.get(f"/unsubscribe?email={quote(address)}&token={token}")

    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_the_token_never_leaves_through_a_referer_or_a_cache(client) -> None:
    page = client.get("/unsubscribe?email=x%40example.com&token=nope")

    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_an_unsubscribed_contact_gets_nothing_on_the_next_tick(
    make_contact, make_event, tick, transport, client, store
) -> None:
    link = sent_link(make_contact, make_event, tick, transport)
    client.post(link, **ONE_CLICK)
    make_event("cart_updated", utc("2026-11-20 05:00"), id="cart-2", **cart("c2"))

    report = tick(utc("2026-11-20 06:00"))

    assert len(transport.sent) == 1  # only the reminder sent before the click
    assert report.rules["abandoned_cart"].sent == 0
    with store.session() as session:
        statuses = sorted(m.status for m in messages.listing(session, messages.QueueFilter()))
    assert statuses == ["sent", "suppressed"]


def test_health_reports_the_queue_by_status(make_contact, make_event, tick, transport, client) -> None:
    sent_link(make_contact, make_event, tick, transport)

    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "queue": {"sent": 1}}


def test_health_answers_503_when_the_database_does_not(project, tmp_path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    unreachable = Store(f"sqlite:///{folder / 'automator.db'}")
    folder.rmdir()  # the database's folder went away after start-up (an unmounted disk)
    client = TestClient(create_app(project, unreachable))

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "database unavailable"}


def test_health_says_the_database_is_unavailable_and_logs_the_drivers_words(project, caplog) -> None:
    """The driver's words name the database's host, port and user (and can quote a
    statement): they go to the log, in one line, and the answer says only what is wrong."""
    from tests.smtp_server import free_port

    port = free_port()  # nothing listens there
    unreachable = Store(f"postgresql+psycopg://automator@127.0.0.1:{port}/shop?connect_timeout=5")
    client = TestClient(create_app(project, unreachable))

    with caplog.at_level("WARNING", logger="automator.web"):
        response = client.get("/health")
    unreachable.dispose()

    assert response.status_code == 503
    assert response.json() == {"status": "error", "error": "database unavailable"}
    [record] = [r for r in caplog.records if r.name == "automator.web"]
    assert record.getMessage() == "health check failed: database unavailable"
    assert record.levelname == "WARNING" and record.exc_info is None  # an outage, not a bug
    error = record.fields["error"]  # type: ignore[attr-defined]
    assert f'"127.0.0.1", port {port} failed' in error and "\n" not in error
