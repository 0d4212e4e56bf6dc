"""The support console over HTTP, as a browser uses it: log in, read the queue, a message, a
contact and the rules, and act with a reason. Every page needs a login, every POST a CSRF
token, every action the right role; whatever a contact, an event or a template holds is
shown as text, never run."""

from __future__ import annotations

import asyncio
import html
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, event
from typer.testing import CliRunner

from automator.cli import app as cli_app
from automator.console import create_app
from automator.console.auth import password_matches
from automator.console.pages import FINAL
from automator.engine import Engine
from automator.project import load_project
from automator.status import OPEN, Status
from automator.store import Store, audit, contacts, coupons, messages, suppressions, users
from automator.store.users import USERS
from automator.tables import Message
from automator.testing import RecordingTransport
from tests.conftest import all_messages, cart, utc
from tests.logins import PASSWORD, act, add_accounts, client_for, log_in, token_in
from tests.smtp_server import free_port

# A cart left at 21:00 in Saigon is due at 22:00, inside quiet hours (21:00–08:00): its
# reminder waits in the queue until 08:00 local time (01:00 UTC the next day).
EVENING_CART = utc("2026-11-20 14:00")
EVENING_TICK = utc("2026-11-20 15:00")
NOW = utc("2026-11-20 15:05")
VI_SUBJECT = "Bạn còn sản phẩm chưa thanh toán trong giỏ hàng"


# ---------------------------------------------------------------- fixtures and helpers


# Every test here logs in or adds users: with the cheapest Argon2 settings.
pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


@pytest.fixture
def console_app(project, store, engine) -> Any:
    return create_app(project, store, clock=lambda: NOW, engine=engine)


@pytest.fixture
def accounts(store: Store) -> None:
    add_accounts(store, NOW)


def post_as_visitor(client: TestClient, path: str, **data: str) -> httpx.Response:
    """Post a form with the token of a visitor's session (one that has not logged in)."""
    return client.post(path, data={"csrf_token": token_in(client.get("/login")), **data})


@pytest.fixture
def anonymous(console_app: Any, accounts: None) -> TestClient:
    return client_for(console_app)


@pytest.fixture
def support(console_app: Any, accounts: None) -> TestClient:
    client = client_for(console_app)
    assert log_in(client, "sam").status_code == 303
    return client


@pytest.fixture
def admin(console_app: Any, accounts: None) -> TestClient:
    client = client_for(console_app)
    assert log_in(client, "ada").status_code == 303
    return client


@pytest.fixture
def lan(make_contact: Callable[..., int]) -> int:
    """Lan, in Saigon, reading Vietnamese."""
    return make_contact("lan@example.com", first_name="Lan", locale="vi", timezone="Asia/Ho_Chi_Minh")


@pytest.fixture
def queued(lan: int, make_event: Callable[..., str], tick: Callable[..., Any], store: Store) -> int:
    """Lan's abandoned-cart reminder, waiting in the queue for the end of quiet hours; its id."""
    make_event("cart_updated", EVENING_CART, email="lan@example.com", id="cart-1", **cart())
    tick(EVENING_TICK)
    with store.session() as session:
        [message] = messages.for_contact(session, lan)
    assert message.status == "queued" and message.id is not None
    return message.id


def message(store: Store, message_id: int) -> Message:
    with store.session() as session:
        found = messages.get(session, message_id)
    assert found is not None
    return found


def history(store: Store, message_id: int) -> list[tuple[str, str, str]]:
    with store.session() as session:
        return [(line.status, line.actor, line.reason) for line in messages.history(session, message_id)]


def audit_of(store: Store, message_id: int) -> list[tuple[str, str, str]]:
    with store.session() as session:
        return [(entry.actor, entry.action, entry.reason) for entry in audit.for_message(session, message_id)]


@pytest.fixture
def make_messages(store: Store) -> Callable[..., list[int]]:
    """`make_messages(n, rule=…, status=…, created_at=…)`: n messages to n new contacts, fast."""
    made = [0]

    def make(
        n: int,
        rule: str = "abandoned_cart",
        status: str = "queued",
        created_at: Any = EVENING_TICK,
        **extra: Any,
    ) -> list[int]:
        ids = []
        with store.session() as session:
            start = made[0]
            emails = [f"shopper{i:05d}@example.com" for i in range(start, start + n)]
            contact_ids = contacts.ensure(session, emails, NOW, "consideration")
            for i, email in enumerate(emails):
                values = {
                    "rule_id": rule,
                    "contact_id": contact_ids[email],
                    "email": email,
                    "occurrence": f"occ-{start + i}",
                    "occurred_at": created_at,
                    "status": status,
                    "due_at": created_at,
                    "send_at": created_at + timedelta(hours=10),
                    "expires_at": created_at + timedelta(days=1),
                    "subject": f"Reminder {start + i}",
                    "created_at": created_at,
                    **extra,
                }
                ids.append(messages.enqueue(session, values, "queued"))
        made[0] += n
        return ids

    return make


# ---------------------------------------------------------------- logging in


PAGES = ["/queue", "/messages/1", "/contacts/1", "/contacts?q=lan", "/rules", "/queue/bulk?action=hold"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_visitor_who_is_not_logged_in_to_the_login_form(anonymous, path) -> None:
    response = anonymous.get(path)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_logging_in_returns_to_the_page_asked_for(anonymous) -> None:
    form = anonymous.get("/login?next=/rules")

    response = anonymous.post(
        "/login", data={"name": "sam", "password": PASSWORD, "csrf_token": token_in(form), "next": "/rules"}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/rules"
    assert anonymous.get("/rules").status_code == 200


def test_a_wrong_password_is_refused(anonymous) -> None:
    response = log_in(anonymous, "sam", "not the password")

    assert response.status_code == 401
    assert "Wrong name or password" in response.text
    assert anonymous.get("/queue").status_code == 303


def test_an_unknown_name_is_refused_like_a_wrong_password(anonymous) -> None:
    response = log_in(anonymous, "mallory")

    assert response.status_code == 401
    assert "Wrong name or password" in response.text


def test_login_never_sends_anyone_to_another_site(anonymous) -> None:
    form = anonymous.get("/login")

    response = anonymous.post(
        "/login",
        data={"name": "sam", "password": PASSWORD, "csrf_token": token_in(form), "next": "//evil.example"},
    )

    assert response.headers["location"] == "/queue"


def test_the_session_cookie_is_httponly_and_samesite_lax(anonymous) -> None:
    response = log_in(anonymous, "sam")

    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http (e.g. on localhost): a Secure cookie would be dropped


def test_the_session_cookie_is_secure_over_https(console_app, accounts) -> None:
    client = client_for(console_app, base_url="https://testserver")

    response = log_in(client, "sam")

    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


def test_a_forged_session_cookie_is_not_a_login(anonymous) -> None:
    anonymous.cookies.set("automator_console", '{"user": "ada"}')

    assert anonymous.get("/queue").status_code == 303


def test_logging_out_ends_the_session(support) -> None:
    response = act(support, "/logout")

    assert response.status_code == 303
    assert support.get("/queue").status_code == 303


def test_a_removed_user_is_logged_out_at_once(support, store) -> None:
    with store.session() as session:
        session.execute(delete(USERS).where(USERS.c.name == "sam"))

    assert support.get("/queue").status_code == 303


def test_passwords_are_stored_as_argon2_hashes(store, accounts) -> None:
    with store.session() as session:
        user = users.get(session, "sam")

    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert password_matches(user.password_hash, PASSWORD)


# ---------------------------------------------------------------- CSRF


POSTS = [
    "/messages/{m}/hold",
    "/messages/{m}/release",
    "/messages/{m}/cancel",
    "/messages/{m}/send-now",
    "/queue/bulk",
    "/contacts/{c}/suppress",
    "/contacts/{c}/unsuppress",
    "/preferences/timezone",
    "/logout",
    "/login",
]


@pytest.mark.parametrize("path", POSTS)
def test_a_post_without_a_csrf_token_is_refused(admin, queued, lan, store, path) -> None:
    url = path.format(m=queued, c=lan)

    response = admin.post(url, data={"reason": "customer asked", "action": "hold", "upto": str(queued)})

    assert response.status_code == 403
    assert "did not come from the console" in response.text
    assert message(store, queued).status == "queued"
    assert audit_of(store, queued) == []


@pytest.mark.parametrize("path", POSTS)
def test_a_post_with_another_sessions_csrf_token_is_refused(
    admin, anonymous, queued, lan, store, path
) -> None:
    foreign = token_in(anonymous.get("/login"))

    response = admin.post(
        path.format(m=queued, c=lan),
        data={"csrf_token": foreign, "reason": "customer asked", "action": "hold", "upto": str(queued)},
    )

    assert response.status_code == 403
    assert message(store, queued).status == "queued"


def test_the_login_form_itself_needs_its_csrf_token(anonymous) -> None:
    anonymous.get("/login")

    response = anonymous.post("/login", data={"name": "sam", "password": PASSWORD})

    assert response.status_code == 403
    assert anonymous.get("/queue").status_code == 303


def test_a_post_without_a_login_is_refused(anonymous, queued, store) -> None:
    response = post_as_visitor(anonymous, f"/messages/{queued}/hold", reason="customer asked")

    assert response.status_code == 401
    assert message(store, queued).status == "queued"


# ---------------------------------------------------------------- roles


@pytest.mark.parametrize(
    "path, data",
    [
        ("/messages/{m}/cancel", {}),
        ("/messages/{m}/send-now", {}),
        ("/queue/bulk", {"action": "hold", "upto": "{m}"}),
        ("/queue/bulk", {"action": "cancel", "upto": "{m}"}),
        ("/contacts/{c}/unsuppress", {}),
    ],
)
def test_support_cannot_cancel_send_now_act_in_bulk_or_unsuppress(support, queued, lan, store, path, data):
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "blocked", "", NOW)
    form = {key: value.format(m=queued) for key, value in data.items()}

    response = act(support, path.format(m=queued, c=lan), reason="customer asked", **form)

    assert response.status_code == 403
    assert "the support role cannot" in response.text
    assert message(store, queued).status == "queued"
    with store.session() as session:
        assert suppressions.get(session, "lan@example.com") is not None


def test_support_cannot_open_the_bulk_confirmation(support, queued) -> None:
    assert support.get("/queue/bulk?action=hold").status_code == 403


def test_a_refusal_says_in_words_what_support_cannot_do(support, queued, lan) -> None:
    bulk = support.get("/queue/bulk?action=hold")
    unsuppress = act(support, f"/contacts/{lan}/unsuppress", reason="customer asked")

    assert "the support role cannot hold or cancel a whole selection; ask an admin" in bulk.text
    assert "the support role cannot remove a suppression; ask an admin" in unsuppress.text


def test_support_sees_no_admin_buttons(support, queued) -> None:
    page = support.get(f"/messages/{queued}").text

    assert f'formaction="/messages/{queued}/hold"' in page
    assert f'formaction="/messages/{queued}/cancel"' not in page
    assert f'formaction="/messages/{queued}/send-now"' not in page
    assert "Send now and cancel need an admin" in page
    assert "Hold all queued" not in support.get("/queue").text


# ---------------------------------------------------------------- the queue page


def test_the_queue_lists_messages_with_counts_by_status(admin, make_messages) -> None:
    make_messages(3)
    make_messages(2, status="held", hold_kind="manual")
    make_messages(1, status="sent")

    page = admin.get("/queue").text

    assert re.search(r"All <b>6</b>", page)
    assert re.search(r"s-queued\">queued</span> <b>3</b>", page)
    assert re.search(r"s-held\">held</span> <b>2</b>", page)
    assert re.search(r"s-sent\">sent</span> <b>1</b>", page)
    assert page.count('<td class="nowrap"><a href="/messages/') == 6


def test_the_queue_filters_by_status(admin, make_messages) -> None:
    queued = make_messages(2)
    held = make_messages(1, status="held", hold_kind="manual")

    page = admin.get("/queue?status=held").text

    assert listed(page) == held
    assert not set(queued) & set(listed(page))


def test_the_queue_filters_by_rule(admin, make_messages) -> None:
    make_messages(2, rule="abandoned_cart")
    trial = make_messages(2, rule="trial_ending")

    assert listed(admin.get("/queue?rule=trial_ending").text) == sorted(trial, reverse=True)


def test_the_queue_filters_by_the_day_queued_in_the_viewers_time_zone(admin, make_messages) -> None:
    # 16:30 UTC on the 19th is 23:30 in Saigon, still the 19th; 17:30 UTC is the 20th there.
    late_on_19th = make_messages(1, created_at=utc("2026-11-19 16:30"))
    on_20th = make_messages(1, created_at=utc("2026-11-19 17:30"))

    assert listed(admin.get("/queue?since=2026-11-20&until=2026-11-20").text) == on_20th
    assert listed(admin.get("/queue?until=2026-11-19").text) == late_on_19th


def test_the_queue_searches_by_the_start_of_an_email(admin, make_messages) -> None:
    ids = make_messages(12)

    page = admin.get("/queue?q=shopper0001").text  # shopper00010 and shopper00011

    assert listed(page) == [ids[11], ids[10]]


def test_the_queue_searches_the_subject(admin, queued, make_messages) -> None:
    make_messages(3)

    assert listed(admin.get("/queue?q=giỏ hàng").text) == [queued]


def test_queue_counts_follow_the_filter(admin, make_messages) -> None:
    make_messages(2, rule="abandoned_cart")
    make_messages(3, rule="trial_ending")

    assert re.search(r"All <b>3</b>", admin.get("/queue?rule=trial_ending").text)


def listed(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<td class="nowrap"><a href="/messages/(\d+)">', page)]


@pytest.mark.sqlite_only  # SQLite's dialect writes the OFFSET this counts
def test_queue_pages_by_key_and_never_repeats_or_skips_a_message(admin, make_messages, store) -> None:
    # 120 messages queued in the same microsecond: the id settles ties.
    ids = make_messages(120)
    offsets: list[Any] = []

    def offset_of(conn, cursor, statement, parameters, context, executemany) -> None:
        if "OFFSET" in statement:  # SQLite's dialect writes LIMIT ? OFFSET ? with an offset of 0
            offsets.append(parameters[-1])

    event.listen(store.engine, "before_cursor_execute", offset_of)

    seen: list[int] = []
    url = "/queue"
    while url:
        page = admin.get(url).text
        seen += listed(page)
        older = re.search(r'href="(/queue\?[^"]*before=\d+[^"]*)" rel="next"', page)
        url = older.group(1).replace("&amp;", "&") if older else ""

    assert seen == sorted(ids, reverse=True)
    assert offsets and set(offsets) == {0}


def test_the_newer_link_goes_back_a_page(admin, make_messages) -> None:
    ids = sorted(make_messages(120), reverse=True)
    second = admin.get(f"/queue?before={ids[49]}").text
    assert listed(second) == ids[50:100]

    newer = re.search(r'href="(/queue\?[^"]*after=\d+[^"]*)" rel="prev"', second)
    assert newer is not None

    assert listed(admin.get(newer.group(1).replace("&amp;", "&")).text) == ids[:50]


def test_the_first_page_has_no_newer_link(admin, make_messages) -> None:
    make_messages(3)

    assert 'rel="prev"' not in admin.get("/queue").text


def test_an_unknown_status_is_a_clear_error(admin) -> None:
    assert "unknown status &#39;lost&#39;" in admin.get("/queue?status=lost").text


@pytest.mark.parametrize(("field", "day"), [("since", "0001-01-01"), ("until", "9999-12-31")])
def test_a_day_at_the_end_of_the_calendar_is_a_clear_error_naming_its_field(admin, field, day) -> None:
    # The queue filters from the start of `since` to the end of `until` in the viewer's
    # zone (Saigon, UTC+7): neither exists as a UTC time for these days.
    queue = admin.get(f"/queue?{field}={day}")
    bulk = admin.get(f"/queue/bulk?action=hold&{field}={day}")

    assert queue.status_code == 200  # the page, unfiltered, with the error above it
    assert bulk.status_code == 400
    label = {"since": "Queued from", "until": "to"}[field]
    for response in (queue, bulk):
        assert (
            f"“{label}”: {day} is too close to the calendar&#39;s first or last day; "
            "pick a day from 0001-01-02 to 9999-12-30"
        ) in response.text


def test_a_day_that_is_no_date_is_a_clear_error_naming_its_field(admin) -> None:
    assert "“to”: “2026-11-31” is not a day written YYYY-MM-DD" in admin.get("/queue?until=2026-11-31").text


def test_days_in_the_wrong_order_say_so(admin, make_messages) -> None:
    make_messages(1)

    page = admin.get("/queue?since=2026-11-21&until=2026-11-20").text

    assert "“Queued from” (2026-11-21) is after “to” (2026-11-20): swap them" in page


def test_the_same_day_from_and_to_is_that_day(admin, make_messages) -> None:
    make_messages(1)  # queued at 22:00 on 2026-11-20 in Saigon

    page = admin.get("/queue?since=2026-11-20&until=2026-11-20").text

    assert "Reminder 0" in page and 'class="flash error"' not in page


@pytest.mark.parametrize("days", ["-1", "0", "31"])
def test_a_results_period_the_page_does_not_offer_is_named_not_replaced_silently(support, days) -> None:
    page = support.get(f"/results?days={days}").text

    assert f"“days” is 7, 30 or 90, not {days}: showing the last 30 days" in page


@pytest.mark.parametrize("page", ["/messages/{}", "/contacts/{}", "/queue?before={}", "/queue?after={}"])
@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
def test_a_number_beyond_any_rows_id_is_a_wrong_value_not_a_crash(admin, page, number) -> None:
    response = admin.get(page.format(number))

    assert response.status_code == 400
    assert "has a wrong value" in response.text


# ---------------------------------------------------------------- the message page


def test_the_message_page_shows_the_vietnamese_email_as_it_will_be_sent(admin, queued) -> None:
    response = admin.get(f"/messages/{queued}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert f'<h1 class="subject-line">{VI_SUBJECT}</h1>' in page
    assert "Áo dài lụa x 1: 1.250.000 ₫" in page  # the text part
    assert "<iframe" in page and "srcdoc=" in page


def test_the_preview_is_a_sandboxed_iframe_without_any_allowance(admin, queued) -> None:
    page = admin.get(f"/messages/{queued}").text

    [iframe] = re.findall(r"<iframe[^>]*>", page)
    assert re.search(r"\ssandbox[\s>]", iframe)
    assert "allow-" not in iframe


def test_the_message_page_lists_every_header(admin, queued) -> None:
    page = admin.get(f"/messages/{queued}").text

    for name in ("From", "To", "Subject", "Date", "Message-ID", "X-Automator-Rule", "List-Unsubscribe"):
        assert f"<th>{name}</th>" in page
    assert f"<td>{VI_SUBJECT}</td>" in page  # decoded, not RFC 2047
    assert "<td>Lan &lt;lan@example.com&gt;</td>" in page


def test_the_message_page_shows_the_contact_rule_and_history(admin, queued) -> None:
    page = admin.get(f"/messages/{queued}").text

    assert '<a href="/contacts/' in page and "lan@example.com" in page
    assert "1h after cart_updated (latest per cart_id), cancelled by order_placed" in page
    assert "queued; waits until <time" in page  # the time as every time on the page: see below
    assert "by automator" in page


def test_the_message_page_shows_the_coupon(admin, make_contact, make_event, tick, store) -> None:
    make_contact("minh@example.com", stage="consideration", locale="vi")
    make_event(
        "order_placed", utc("2026-11-18 03:00"), email="minh@example.com", id="o-1", order_id="o-1", total=1
    )
    tick(utc("2026-11-19 03:30"))
    with store.session() as session:
        [thank_you] = messages.listing(session, messages.QueueFilter(rule="post_purchase_thank_you"))
        coupon = coupons.for_message(session, thank_you.id or 0)
    assert coupon is not None

    page = admin.get(f"/messages/{thank_you.id}").text

    assert f'<dd class="mono">{coupon.code}</dd>' in page


def test_times_show_in_the_viewers_zone_with_utc_on_hover(admin, queued) -> None:
    page = admin.get(f"/messages/{queued}").text

    # sends at 01:00 UTC = 08:00 in Saigon, the project's zone
    assert (
        '<time datetime="2026-11-21T01:00:00+00:00" title="2026-11-21 01:00:00 UTC">2026-11-21 08:00</time>'
        in page
    )


def test_the_viewer_can_choose_another_time_zone(admin, queued) -> None:
    response = act(admin, "/preferences/timezone", zone="Europe/Paris", next=f"/messages/{queued}")

    assert response.headers["location"] == f"/messages/{queued}"
    page = admin.get(f"/messages/{queued}").text
    assert 'title="2026-11-21 01:00:00 UTC">2026-11-21 02:00</time>' in page
    assert "<option selected>Europe/Paris</option>" in page


def test_why_not_shows_its_times_in_the_viewers_zone(admin, queued, lan) -> None:
    # The reminder is queued for 01:00 UTC: 08:00 in Saigon (the project's zone), 02:00 in Paris.
    assert "message " + str(queued) + ", to go at 2026-11-21 08:00" in html.unescape(
        admin.get(f"/contacts/{lan}").text
    )

    act(admin, "/preferences/timezone", zone="Europe/Paris", next=f"/contacts/{lan}")

    page = html.unescape(admin.get(f"/contacts/{lan}").text)
    assert "message " + str(queued) + ", to go at 2026-11-21 02:00" in page
    assert "01:00Z" not in page


def test_console_pages_forbid_scripts_from_anywhere_else(admin, queued) -> None:
    response = admin.get(f"/messages/{queued}")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"


def test_a_missing_message_is_a_404(admin) -> None:
    response = admin.get("/messages/999")

    assert response.status_code == 404
    assert "message 999 does not exist" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no-such-page", 404), ("GET", "/messages/1/hold", 405), ("DELETE", "/queue", 405)],
)
def test_an_unknown_page_or_method_is_a_console_page_not_json(admin, method, path, status) -> None:
    response = admin.request(method, path)

    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert "Back to the queue" in response.text
    assert '"detail"' not in response.text


# ---------------------------------------------------------------- actions on a message


def test_support_holds_a_queued_message_with_a_reason(support, queued, store) -> None:
    response = act(support, f"/messages/{queued}/hold", reason="khách hàng yêu cầu chờ")

    assert response.status_code == 303
    assert message(store, queued).status == "held"
    assert history(store, queued)[-1] == ("held", "sam", "khách hàng yêu cầu chờ")
    assert audit_of(store, queued) == [("sam", "hold", "khách hàng yêu cầu chờ")]


def test_the_hold_shows_in_the_history_and_audit_log_of_the_message_page(support, queued) -> None:
    act(support, f"/messages/{queued}/hold", reason="customer asked to wait")

    page = support.get(f"/messages/{queued}?done=hold").text

    assert "Held. It will not be sent until someone releases it." in page
    assert page.count("customer asked to wait") == 2  # status history and audit log
    assert "by sam" in page


def test_support_releases_a_held_message(support, queued, store) -> None:
    act(support, f"/messages/{queued}/hold", reason="wait")

    response = act(support, f"/messages/{queued}/release", reason="customer is fine with it")

    assert response.status_code == 303
    assert message(store, queued).status == "queued"
    assert audit_of(store, queued)[-1] == ("sam", "release", "customer is fine with it")


def test_going_back_to_the_page_after_a_hold_does_not_say_held_once_released(support, queued) -> None:
    act(support, f"/messages/{queued}/hold", reason="wait")
    act(support, f"/messages/{queued}/release", reason="customer is fine with it")

    back = support.get(f"/messages/{queued}?done=hold").text

    assert "Held." not in back
    assert "Released: it is back in the queue." in support.get(f"/messages/{queued}?done=release").text


@pytest.fixture
def held_offer(make_contact: Callable[..., int], tick: Callable[..., Any], store: Store) -> int:
    """Lan's renewal offer, held: the coupon pool is empty; its id."""
    make_contact("lan@example.com", stage="retention", renews_at="2026-12-20")
    tick(utc("2026-11-20 03:00"))
    [held] = all_messages(store)
    assert held.status == "held" and held.id is not None
    return held.id


def test_releasing_an_offer_whose_pool_is_still_empty_shows_it_stays_held(admin, held_offer, store) -> None:
    response = act(admin, f"/messages/{held_offer}/release", reason="codes should be in")

    assert response.status_code == 409
    assert "still held: coupon pool &#39;renewal&#39; is empty" in response.text
    assert "back in the queue" not in response.text
    assert message(store, held_offer).status == "held"
    assert audit_of(store, held_offer) == [("ada", "release", "codes should be in")]


def test_support_cannot_lift_a_hold_for_a_coupon(support, held_offer, store) -> None:
    response = act(support, f"/messages/{held_offer}/release", reason="looks fine to me")

    assert response.status_code == 403
    assert "held by its empty coupon pool; only an admin can release it" in response.text
    assert message(store, held_offer).status == "held"


@pytest.mark.parametrize("how", ["one", "bulk"])
def test_support_cannot_lift_an_admins_hold(support, admin, queued, store, how) -> None:
    if how == "one":
        act(admin, f"/messages/{queued}/hold", reason="legal review")
    else:
        confirm = admin.get("/queue/bulk", params={"action": "hold"})
        form = {"action": "hold", "upto": str(queued), "reason": "legal review"}
        assert admin.post("/queue/bulk", data={"csrf_token": token_in(confirm), **form}).status_code == 303
    assert message(store, queued).status == "held"

    response = act(support, f"/messages/{queued}/release", reason="customer is fine with it")

    assert response.status_code == 403
    assert "only an admin can release it" in response.text
    assert message(store, queued).status == "held"


def test_an_offer_held_for_its_coupon_says_what_it_waits_for_instead_of_a_blank_preview(
    support, held_offer
) -> None:
    page = support.get(f"/messages/{held_offer}").text

    assert "Not rendered yet. It waits for a code from its rule's coupon pool" in page
    assert "<iframe" not in page


def test_admin_cancels_a_message(admin, queued, store) -> None:
    response = act(admin, f"/messages/{queued}/cancel", reason="please don't send me that again")

    assert response.status_code == 303
    assert message(store, queued).status == "cancelled"
    assert audit_of(store, queued) == [("ada", "cancel", "please don't send me that again")]


def test_a_cancelled_message_says_when_it_was_due_not_that_it_will_be_sent(admin, queued) -> None:
    act(admin, f"/messages/{queued}/cancel", reason="customer asked")

    page = admin.get(f"/messages/{queued}").text

    assert "was due at" in page and "As it would have been sent" in page
    assert "sends at" not in page and "As it will be sent" not in page


def test_a_sent_message_is_shown_as_it_was_sent(admin, make_messages) -> None:
    [sent] = make_messages(1, status="sent", sent_at=NOW)

    page = admin.get(f"/messages/{sent}").text

    assert "As it was sent" in page and "As it will be sent" not in page


def test_a_sent_message_says_why_it_has_no_actions(support, make_messages) -> None:
    [sent] = make_messages(1, status="sent", sent_at=NOW)

    page = support.get(f"/messages/{sent}").text

    assert "Sent mail cannot be held or cancelled: it has gone out." in page
    assert 'formaction="/messages/' not in page


def test_every_status_without_actions_has_its_reason() -> None:
    assert set(FINAL) == set(Status) - OPEN


def test_admin_sends_a_message_now(admin, queued, store) -> None:
    response = act(admin, f"/messages/{queued}/send-now", reason="customer is waiting for it")

    assert response.status_code == 303
    sent_now = message(store, queued)
    assert sent_now.status == "queued" and sent_now.send_at == NOW and sent_now.skip_policies


def test_an_action_without_a_reason_is_refused(support, queued, store) -> None:
    response = act(support, f"/messages/{queued}/hold", reason="  ")

    assert response.status_code == 400
    assert "a reason is required" in response.text
    assert message(store, queued).status == "queued"


def test_holding_a_message_that_is_not_queued_is_a_clear_error(admin, queued, store) -> None:
    act(admin, f"/messages/{queued}/cancel", reason="asked")

    response = act(admin, f"/messages/{queued}/hold", reason="asked again")

    assert response.status_code == 409
    assert "only a queued message can be held" in response.text
    assert message(store, queued).status == "cancelled"


def test_a_time_in_a_history_note_is_shown_in_the_viewers_zone(support, queued) -> None:
    page = support.get(f"/messages/{queued}").text

    # 01:00 UTC is 08:00 in Saigon, the viewer's zone; UTC on hover, as for every time.
    waits = (
        '<time datetime="2026-11-21T01:00:00+00:00" title="2026-11-21 01:00:00 UTC">2026-11-21 08:00</time>'
    )
    assert f"queued; waits until {waits} (quiet hours)" in page
    assert "waits until 2026-11-21T01:00:00+00:00" not in page


def test_a_history_note_with_a_time_is_still_shown_as_text(admin, queued) -> None:
    act(admin, f"/messages/{queued}/hold", reason="<b>wait</b> until 2026-11-22T01:00:00+00:00 & see")

    page = admin.get(f"/messages/{queued}").text

    assert "&lt;b&gt;wait&lt;/b&gt; until <time" in page and ">2026-11-22 08:00</time> &amp; see" in page


def test_a_held_message_says_once_and_in_words_who_held_it(support, queued) -> None:
    act(support, f"/messages/{queued}/hold", reason="asked")

    page = support.get(f"/messages/{queued}").text
    heading = page[page.index('<div class="heading">') : page.index('<div class="columns">')]

    assert '<span class="badge s-held">held</span> <span class="muted">by support</span>' in heading
    assert heading.count("held") == 2  # the badge's class and its word
    assert '<span class="muted small">by support</span>' in support.get("/queue").text


def test_a_refused_action_says_when_in_the_viewers_zone(admin, queued) -> None:
    act(admin, "/preferences/timezone", zone="Europe/Paris", next=f"/messages/{queued}")
    act(admin, f"/messages/{queued}/cancel", reason="asked")

    response = act(admin, f"/messages/{queued}/hold", reason="asked again")

    assert response.status_code == 409
    assert f"message {queued} was cancelled at 2026-11-20 16:05, before your hold" in response.text  # 15:05Z


def test_an_unknown_action_is_a_404(admin, queued) -> None:
    assert act(admin, f"/messages/{queued}/explode", reason="x").status_code == 404


def test_an_action_on_a_number_beyond_any_rows_id_is_a_wrong_value(admin, lan) -> None:
    assert act(admin, f"/messages/{10**30}/hold", reason="x").status_code == 400
    assert act(admin, f"/contacts/{2**63}/suppress", reason="x").status_code == 400


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("x" * 501, "a reason has at most 500 characters (this one has 501)"),
        ("asked\r\nBcc: someone", "a reason is one line of text"),
        ("\x1b[2Jall clear", "a reason is one line of text"),
    ],
)
def test_a_reason_is_one_line_of_text_of_limited_length(support, queued, lan, store, reason, said) -> None:
    held = act(support, f"/messages/{queued}/hold", reason=reason)
    suppressed = act(support, f"/contacts/{lan}/suppress", reason=reason, kind="blocked")

    for response in (held, suppressed):
        assert response.status_code == 400
        assert said in response.text
    assert message(store, queued).status == "queued"
    assert history(store, queued)[-1][0] == "queued"
    with store.session() as session:
        assert suppressions.get(session, "lan@example.com") is None


def test_a_refused_reason_stays_in_the_form_to_correct(support, admin, queued, lan) -> None:
    typed = "customer wrote twice,\nasking us to wait"
    pages = [
        act(support, f"/messages/{queued}/hold", reason=typed),
        act(support, f"/contacts/{lan}/suppress", reason=typed, kind="blocked"),
        act(admin, "/queue/bulk", action="hold", upto=str(queued), reason=typed),
    ]

    for page in pages:
        assert page.status_code == 400
        assert f'maxlength="500">{html.escape(typed)}</textarea>' in page.text


def test_after_a_refused_action_the_time_zone_picker_returns_to_the_message(admin, queued) -> None:
    act(admin, f"/messages/{queued}/cancel", reason="asked")
    refused = act(admin, f"/messages/{queued}/hold", reason="asked again")

    assert refused.status_code == 409
    assert f'name="next" value="/messages/{queued}"' in refused.text
    chosen = act(admin, "/preferences/timezone", zone="UTC", next=f"/messages/{queued}")
    assert chosen.headers["location"] == f"/messages/{queued}"


# ---------------------------------------------------------------- bulk actions


def test_the_bulk_confirmation_says_how_many_it_will_touch(admin, make_messages) -> None:
    make_messages(3, rule="abandoned_cart")
    make_messages(1, rule="abandoned_cart", status="sent")
    make_messages(2, rule="trial_ending")

    page = admin.get("/queue/bulk?action=hold&rule=abandoned_cart").text

    assert "Hold 3 messages?" in page
    assert "rule <b>abandoned_cart</b>" in page


def test_bulk_hold_holds_everything_queued_from_a_rule(admin, make_messages, store) -> None:
    carts = make_messages(3, rule="abandoned_cart")
    trials = make_messages(2, rule="trial_ending")
    confirm = admin.get("/queue/bulk?action=hold&rule=abandoned_cart")
    upto = re.search(r'name="upto" value="(\d+)"', confirm.text)
    assert upto is not None

    response = admin.post(
        "/queue/bulk",
        data={
            "csrf_token": token_in(confirm),
            "action": "hold",
            "upto": upto.group(1),
            "rule": "abandoned_cart",
            "reason": "template has a wrong price",
        },
    )

    assert response.status_code == 303
    assert "done=hold" in response.headers["location"] and "touched=3" in response.headers["location"]
    assert {message(store, i).status for i in carts} == {"held"}
    assert {message(store, i).status for i in trials} == {"queued"}
    assert history(store, carts[0])[-1] == ("held", "ada", "template has a wrong price")
    assert audit_of(store, carts[0]) == [("ada", "bulk hold", "template has a wrong price")]
    assert "Held 3 messages." in admin.get(response.headers["location"]).text


def test_bulk_cancel_leaves_messages_queued_after_the_confirmation_alone(admin, make_messages, store) -> None:
    counted = make_messages(2)
    confirm = admin.get("/queue/bulk?action=cancel")
    assert "Cancel 2 messages?" in confirm.text
    upto = re.search(r'name="upto" value="(\d+)"', confirm.text)
    assert upto is not None
    later = make_messages(1)

    admin.post(
        "/queue/bulk",
        data={"csrf_token": token_in(confirm), "action": "cancel", "upto": upto.group(1), "reason": "stop"},
    )

    assert {message(store, i).status for i in counted} == {"cancelled"}
    assert message(store, later[0]).status == "queued"


def test_bulk_cancel_returns_pool_coupons(admin, make_messages, store) -> None:
    [held] = make_messages(1, status="held", hold_kind="manual")
    with store.session() as session:
        coupons.import_pool(session, "renewal", ["CODE-1"], 15, None, NOW)
        [code] = coupons.free_codes(session, "renewal", 1)
        assert coupons.assign(session, {code.id: (held, 1)}, "abandoned_cart", NOW) == {code.id}
    confirm = admin.get("/queue/bulk?action=cancel")

    admin.post(
        "/queue/bulk",
        data={"csrf_token": token_in(confirm), "action": "cancel", "upto": str(held), "reason": "stop"},
    )

    with store.session() as session:
        assert coupons.pool_counts(session) == {"renewal": (1, 0)}


def test_bulk_needs_a_reason(admin, make_messages, store) -> None:
    [one] = make_messages(1)
    confirm = admin.get("/queue/bulk?action=hold")

    response = admin.post(
        "/queue/bulk",
        data={"csrf_token": token_in(confirm), "action": "hold", "upto": str(one), "reason": ""},
    )

    assert response.status_code == 400
    assert "a reason is required" in response.text
    assert message(store, one).status == "queued"


def test_a_second_bulk_hold_of_the_same_selection_says_it_is_held_already(admin, make_messages) -> None:
    make_messages(3)
    confirm = admin.get("/queue/bulk?action=hold&status=queued")
    upto = re.search(r'name="upto" value="(\d+)"', confirm.text)
    assert upto is not None
    form = {"csrf_token": token_in(confirm), "action": "hold", "status": "queued", "reason": "wrong price"}

    first = admin.post("/queue/bulk", data={**form, "upto": upto.group(1)})
    second = admin.post("/queue/bulk", data={**form, "upto": upto.group(1)})

    assert "Held 3 messages." in admin.get(first.headers["location"]).text
    shown = admin.get(second.headers["location"]).text
    assert "Nothing changed: 3 messages of this selection are held already." in shown
    assert "Held 0 messages" not in shown


def test_a_second_click_on_hold_says_the_message_is_held_already(admin, queued, store) -> None:
    first = act(admin, f"/messages/{queued}/hold", reason="asked")
    second = act(admin, f"/messages/{queued}/hold", reason="asked")

    assert first.status_code == 303
    assert second.status_code == 200
    assert f"Message {queued} was held at 2026-11-20 22:05, before your hold; nothing changed." in second.text
    assert 'class="flash error"' not in second.text
    assert [line[0] for line in history(store, queued)] == ["queued", "held"]


# ---------------------------------------------------------------- contacts


def test_searching_an_exact_email_opens_the_contact(support, lan) -> None:
    response = support.get("/contacts?q=Lan@Example.com")

    assert response.status_code == 303
    assert response.headers["location"] == f"/contacts/{lan}"


def test_searching_the_start_of_an_email_lists_the_matches(support, make_contact) -> None:
    make_contact("lan.nguyen@example.com")
    make_contact("lan.tran@example.com")
    make_contact("minh@example.com")

    page = support.get("/contacts?q=lan.").text

    assert "lan.nguyen@example.com" in page and "lan.tran@example.com" in page
    assert "minh@example.com" not in page


def test_searching_a_name_lists_the_contacts_whose_first_or_last_name_starts_with_it(support, make_contact):
    make_contact("lan@example.com", first_name="Lan", last_name="Nguyễn")
    make_contact("duc@example.com", first_name="Đức", last_name="Nguyễn Văn")
    make_contact("hoa@example.com", first_name="Hoa", last_name="Trần")

    page = support.get("/contacts?q=NGUY").text

    assert "lan@example.com" in page and "duc@example.com" in page
    assert "hoa@example.com" not in page
    assert "Lan Nguyễn" in page and "Đức Nguyễn Văn" in page  # as addresses are listed


def test_searching_a_name_in_another_case_finds_letters_beyond_a_to_z(support, make_contact) -> None:
    duc = make_contact("duc@example.com", first_name="Đức", last_name="Phạm")
    emile = make_contact("emile@example.com", first_name="Émile", last_name="ÉTIENNE")
    make_contact("dung@example.com", first_name="Dũng")  # a D, not a Đ

    typed = {"đức": duc, "ĐỨC": duc, "đ": duc, "phạ": duc, "éMI": emile, "étienne": emile}
    for text, found in typed.items():
        assert support.get("/contacts", params={"q": text}).headers["location"] == f"/contacts/{found}"


def test_searching_a_whole_name_finds_the_contact_in_either_order(support, make_contact) -> None:
    duc = make_contact("duc@example.com", first_name="Đức", last_name="Phạm")
    make_contact("duc.tran@example.com", first_name="Đức", last_name="Trần")

    for text in ("Đức Ph", "phạm đức"):
        assert support.get("/contacts", params={"q": text}).headers["location"] == f"/contacts/{duc}"


def test_a_name_search_says_when_more_contacts_match_than_it_lists(support, make_contact) -> None:
    for n in range(51):
        make_contact(f"tran{n:02d}@example.com", first_name="Trần")

    page = support.get("/contacts", params={"q": "trần"}).text

    assert page.count('<a href="/contacts/') == 50
    assert "More contacts match than these 50" in page


def test_a_name_typed_in_the_search_is_shown_as_text(support, make_contact) -> None:
    make_contact("a@example.com", first_name="<b>x")
    make_contact("b@example.com", first_name="<b>y")

    page = support.get("/contacts", params={"q": "<b>"}).text

    assert "&lt;b&gt;x" in page and "<b>x" not in page
    assert "“&lt;b&gt;”" in page


def test_the_search_box_says_names_work(support) -> None:
    assert 'placeholder="Find a contact by email or name"' in support.get("/contacts").text


def test_the_contact_page_shows_profile_stage_events_messages_and_suppression(
    support, queued, lan, make_event
):
    make_event("page_viewed", utc("2026-11-20 14:30"), email="lan@example.com", id="view-1", page="/áo-dài")

    page = support.get(f"/contacts/{lan}").text

    assert "<h1>Lan</h1>" in page
    assert "<dd>Asia/Ho_Chi_Minh</dd>" in page
    assert "consideration" in page and "import" in page  # stage and its history
    assert page.index("page_viewed") < page.index("cart_updated")  # events newest first
    assert "Áo dài lụa" in page
    assert f'<a href="/messages/{queued}">{VI_SUBJECT}</a>' in page
    assert "Not suppressed" in page


def test_support_suppresses_a_contact_with_a_reason(support, lan, store) -> None:
    response = act(support, f"/contacts/{lan}/suppress", kind="blocked", reason="đừng gửi mã giảm giá nữa")

    assert response.status_code == 303
    with store.session() as session:
        found = suppressions.get(session, "lan@example.com")
        entries = audit.for_contact(session, lan)
    assert found is not None and found.reason == "blocked" and found.note == "đừng gửi mã giảm giá nữa"
    assert [(e.actor, e.action, e.reason) for e in entries] == [
        ("sam", "suppress (blocked)", "đừng gửi mã giảm giá nữa")
    ]
    assert "đừng gửi mã giảm giá nữa" in support.get(f"/contacts/{lan}").text


def test_admin_unsuppresses_a_contact_with_a_reason(admin, lan, store) -> None:
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "blocked", "", NOW)

    response = act(admin, f"/contacts/{lan}/unsuppress", reason="asked to get offers again")

    assert response.status_code == 303
    with store.session() as session:
        assert suppressions.get(session, "lan@example.com") is None
        [entry] = audit.for_contact(session, lan)
    assert (entry.actor, entry.action) == ("ada", "unsuppress")


def test_going_back_to_the_page_after_a_suppression_does_not_say_suppressed_once_removed(
    support, admin, lan
) -> None:
    act(support, f"/contacts/{lan}/suppress", reason="asked", kind="blocked")
    act(admin, f"/contacts/{lan}/unsuppress", reason="asked to get mail again")

    back = support.get(f"/contacts/{lan}?done=suppress").text

    assert "Suppressed: this address gets nothing more" not in back
    assert "Suppression removed" in support.get(f"/contacts/{lan}?done=unsuppress").text


def test_suppressing_needs_a_reason(support, lan, store) -> None:
    response = act(support, f"/contacts/{lan}/suppress", kind="blocked", reason="")

    assert response.status_code == 400
    with store.session() as session:
        assert suppressions.get(session, "lan@example.com") is None


def test_message_actions_show_in_the_contacts_audit_log(support, queued, lan) -> None:
    act(support, f"/messages/{queued}/hold", reason="customer asked to wait")

    page = support.get(f"/contacts/{lan}").text

    assert "customer asked to wait" in page
    assert f'<a href="/messages/{queued}">#{queued}</a>' in page


def test_what_a_contact_or_event_holds_is_shown_as_text(support, make_contact, make_event) -> None:
    cid = make_contact("eve@example.com", first_name="<script>alert(1)</script>")
    make_event(
        "cart_updated", EVENING_CART, email="eve@example.com", id="x", note="<img src=x onerror=alert(2)>"
    )

    page = support.get(f"/contacts/{cid}").text

    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


# ---------------------------------------------------------------- templates are not trusted


def test_a_script_in_an_email_template_stays_inside_the_sandboxed_preview(
    project_dir, environ, make_contact, make_event, accounts, store
) -> None:
    body = project_dir / "email_templates" / "abandoned_cart" / "body.vi.html"
    body.write_text(
        body.read_text(encoding="utf-8").replace(
            "{% block content %}", "{% block content %}<script>window.parent.pwned = 1</script>"
        ),
        encoding="utf-8",
    )
    project = load_project(project_dir, environ)
    engine = Engine(project, store, RecordingTransport())
    make_contact("lan@example.com", first_name="Lan", locale="vi", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", EVENING_CART, email="lan@example.com", id="cart-1", **cart())
    asyncio.run(engine.tick(EVENING_TICK))
    client = client_for(create_app(project, store, clock=lambda: NOW, engine=engine))
    log_in(client, "sam")

    page = client.get("/messages/1").text

    assert "<script>window.parent" not in page
    assert "&lt;script&gt;window.parent.pwned = 1&lt;/script&gt;" in page


# ---------------------------------------------------------------- rules


def test_the_rules_page_shows_triggers_last_evaluation_and_7_day_counts(admin, queued, make_messages) -> None:
    make_messages(2, rule="abandoned_cart", status="cancelled", created_at=NOW - timedelta(days=10))

    page = admin.get("/rules").text

    assert "3d before contact.trial_ends_at, cancelled by subscription_started" in page
    assert "found 1, queued 1" in page  # the abandoned_cart tick
    row = page[page.index("<b>abandoned_cart</b>") : page.index("<b>post_purchase_thank_you</b>")]
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["1", "0", "0"]  # old ones not counted


def test_the_rules_page_counts_sends_and_cancellations_of_the_last_7_days(admin, queued, store) -> None:
    act(admin, f"/messages/{queued}/cancel", reason="asked")

    page = admin.get("/rules").text

    row = page[page.index("<b>abandoned_cart</b>") : page.index("<b>post_purchase_thank_you</b>")]
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["1", "0", "1"]


def test_the_rules_page_shows_what_check_found(project_dir, environ, store, accounts) -> None:
    (project_dir / "rules" / "broken.yaml").write_text("id: broken\ntrigger: {event: x}\n", encoding="utf-8")
    template = project_dir / "email_templates" / "trial_ending" / "subject.txt"
    template.write_text("{{ oops", encoding="utf-8")
    project = load_project(project_dir, environ)
    client = client_for(create_app(project, store, clock=lambda: NOW))
    log_in(client, "sam")

    page = client.get("/rules").text

    assert "rules/broken.yaml" in page
    row = page[page.index("<b>trial_ending</b>") :]
    assert "not running" in row and "email_templates/trial_ending/subject.txt" in row


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def runner_in(project_dir: Path, environ: dict[str, str]) -> Callable[..., Any]:
    def run(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(cli_app, ["--project", str(project_dir), *args], input=input)

    return run


def test_users_add_reads_the_password_from_stdin_and_stores_a_hash(runner_in, store) -> None:
    result = runner_in("users", "add", "sam", "--role", "support", "--password-stdin", input=f"{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "added support sam" in result.output
    with store.session() as session:
        user = users.get(session, "sam")
    assert user is not None and user.role == "support" and password_matches(user.password_hash, PASSWORD)


def test_users_add_prompts_for_the_password_twice(runner_in, store) -> None:
    result = runner_in("users", "add", "ada", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    with store.session() as session:
        assert users.get(session, "ada") is not None


def test_users_add_refuses_an_unknown_role(runner_in) -> None:
    result = runner_in("users", "add", "sam", "--role", "boss", "--password-stdin", input=f"{PASSWORD}\n")

    assert result.exit_code == 1
    assert "--role must be one of support, admin" in result.output


def test_users_add_refuses_a_short_password(runner_in) -> None:
    result = runner_in("users", "add", "sam", "--role", "support", "--password-stdin", input="short\n")

    assert result.exit_code == 1
    assert "at least 8 characters" in result.output


def test_users_add_refuses_a_name_with_a_control_character(runner_in, store) -> None:
    result = runner_in(
        "users", "add", "esc\x1b[31mred", "--role", "support", "--password-stdin", input=f"{PASSWORD}\n"
    )

    assert result.exit_code == 1
    assert "a user name cannot hold control characters (esc\\x1b[31mred)" in result.output
    with store.session() as session:
        assert users.listing(session) == []


def test_users_add_refuses_a_name_in_use(runner_in) -> None:
    runner_in("users", "add", "sam", "--role", "support", "--password-stdin", input=f"{PASSWORD}\n")

    result = runner_in("users", "add", "sam", "--role", "admin", "--password-stdin", input=f"{PASSWORD}\n")

    assert result.exit_code == 1
    assert "there is already a user named sam" in result.output


def test_users_list_shows_names_and_roles(runner_in, accounts) -> None:
    result = runner_in("users", "list")

    assert result.exit_code == 0
    assert re.search(r"^ada\tadmin\t", result.output, re.M)
    assert re.search(r"^sam\tsupport\t", result.output, re.M)


SCRIPT = Path(sys.executable).with_name("automator")
AUTOMATOR = (
    [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from automator.cli import app; app()"]
)


@pytest.fixture
def served(project_dir: Path, process_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start `automator <args>` and wait (bounded) until it answers on /login; its base URL."""
    started: list[subprocess.Popen[bytes]] = []

    def serve(*args: str, port: int) -> str:
        log = (tmp_path / f"served-{len(started)}.log").open("w")
        process = subprocess.Popen(
            [*AUTOMATOR, "--project", str(project_dir), *args],
            env=process_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"served-{len(started) - 1}.log").read_text()
            try:
                httpx.get(f"{base}/login", timeout=1)
                return base
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"nothing answered on {base} within 30 s")

    yield serve
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(25)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_automator_console_serves_the_login_page(served) -> None:
    port = free_port()
    base = served("console", "--host", "127.0.0.1", "--port", str(port), port=port)

    response = httpx.get(f"{base}/queue", follow_redirects=True, timeout=10)

    assert response.status_code == 200
    assert "<h1>Log in</h1>" in response.text


def test_automator_run_serves_the_console_with_the_daemon(served) -> None:
    port = free_port()
    base = served("run", "--console", "--console-listen", f"127.0.0.1:{port}", port=port)

    response = httpx.get(f"{base}/login", timeout=10)

    assert response.status_code == 200
    assert "automator console" in response.text
