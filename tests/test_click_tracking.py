"""Click tracking, off by default: with `track_clicks = true` the links of a sent email's HTML
part are signed redirects (`/c/<token>`) that count a click and lead where the link pointed;
a tampered or foreign token is a 404 that redirects nowhere."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from automator.clicks import token, tracked
from automator.engine import Engine
from automator.project import Project, load_project
from automator.store import Store, clicks
from automator.tables import Click
from automator.testing import RecordingTransport
from automator.web import create_app
from tests.conftest import all_messages, cart, utc

CART_AT = utc("2026-11-20 02:00")  # 09:00 in Saigon: the reminder goes at 03:00
SENT_AT = utc("2026-11-20 03:00")
CART_URL = "https://shop.example.com/cart/c1"
REDIRECT = re.compile(r'href="(https://shop\.example\.com/c/[^"]+)"')


def html_of(email: Any) -> str:
    return email.get_body(("html",)).get_content()


def send_cart_reminder(project: Project, store: Store, make_contact: Any, make_event: Any) -> tuple[int, str]:
    """Lan's cart reminder, sent; its message id and HTML part."""
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", CART_AT, id="cart-1", **cart())
    transport = RecordingTransport()
    asyncio.run(Engine(project, store, transport).tick(SENT_AT))
    [message] = all_messages(store)
    [email] = transport.sent
    assert message.id is not None and message.status == "sent"
    return message.id, html_of(email)


@pytest.fixture
def tracking(project_dir: Path, environ: dict[str, str]) -> Project:
    """The shipped project with `track_clicks = true`."""
    settings = project_dir / "automator.toml"
    text = settings.read_text(encoding="utf-8").replace(
        "[automator]\n", "[automator]\ntrack_clicks = true\n", 1
    )
    settings.write_text(text, encoding="utf-8")
    return load_project(project_dir, environ)


def clicks_in(store: Store) -> int:
    with store.session() as session:
        return int(session.execute(select(func.count()).select_from(Click)).scalar_one())


def test_links_are_left_alone_by_default(project, store, make_contact, make_event) -> None:
    assert project.settings.track_clicks is False
    _, html = send_cart_reminder(project, store, make_contact, make_event)

    assert f'href="{CART_URL}"' in html
    assert "/c/" not in html


def test_a_tracked_link_counts_the_click_and_redirects_to_the_original(
    tracking, store, make_contact, make_event, cli
) -> None:
    message_id, html = send_cart_reminder(tracking, store, make_contact, make_event)
    redirects = REDIRECT.findall(html)
    assert redirects and f'href="{CART_URL}"' not in html
    assert "/unsubscribe?email=lan%40example.com&amp;token=" in html  # the unsubscribe link stays
    client = TestClient(create_app(tracking, store, clock=lambda: utc("2026-11-20 04:00")))

    answers = [
        client.get(link.removeprefix("https://shop.example.com"), follow_redirects=False)
        for link in redirects
    ]

    assert {answer.status_code for answer in answers} == {302}
    assert CART_URL in [answer.headers["location"] for answer in answers]
    assert clicks_in(store) == len(redirects)
    with store.session() as session:
        assert clicks.counts(session, [message_id, message_id + 1]) == {message_id: len(redirects)}
    report = json.loads(cli("report", "--json").output)
    [cart_reminder] = [rule for rule in report["rules"] if rule["rule"] == "abandoned_cart"]
    assert cart_reminder["total"]["clicks"] == len(redirects)


@pytest.mark.parametrize(
    "forged",
    [
        lambda secret, message_id: token(secret, message_id, "https://evil.example.net/")[:-1] + "0",
        lambda secret, message_id: token("another secret of at least 32 characters!", message_id, CART_URL),
        lambda secret, message_id: ".".join(
            [str(message_id), token(secret, message_id, "https://evil.example.net/").split(".")[1]]
            + [token(secret, message_id, CART_URL).split(".")[2]]
        ),
        lambda secret, message_id: token(secret, message_id + 1, CART_URL).replace(
            str(message_id + 1), str(message_id), 1
        ),
        lambda secret, message_id: "not-a-token",
    ],
    ids=["bad signature", "other secret", "url swapped", "message swapped", "garbage"],
)
def test_a_tampered_token_is_a_404_that_redirects_nowhere(
    forged, tracking, store, make_contact, make_event
) -> None:
    message_id, _ = send_cart_reminder(tracking, store, make_contact, make_event)
    client = TestClient(create_app(tracking, store))

    answer = client.get(f"/c/{forged(tracking.settings.secret, message_id)}", follow_redirects=False)

    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert clicks_in(store) == 0


def test_only_http_links_are_rewritten_and_never_the_unsubscribe_link() -> None:
    html = (
        '<a href="https://shop.example.com/p?a=1&amp;b=2">shop</a>'
        ' <a href="mailto:hi@shop.example.com">mail</a>'
        ' <a href="tel:+84123">call</a> <a class="x" href=\'http://blog.example.com/\'>blog</a>'
        ' <a href="https://shop.example.com/unsubscribe?email=a&amp;token=t">unsubscribe</a>'
    )

    out = tracked(html, 7, "https://shop.example.com/", "s" * 40)

    assert out.count("https://shop.example.com/c/7.") == 2
    assert 'href="mailto:hi@shop.example.com"' in out and 'href="tel:+84123"' in out
    assert 'href="https://shop.example.com/unsubscribe?email=a&amp;token=t"' in out
    assert (
        token("s" * 40, 7, "https://shop.example.com/p?a=1&b=2") in out
    )  # the URL as the reader's browser sees it
