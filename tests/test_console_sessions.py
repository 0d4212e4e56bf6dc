"""Console sessions end when they should: at logout (a copy of the cookie is worth nothing
after it), when an operator removes a user or changes their password or role, and 12 hours
after logging in, however often the cookie was written since."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from typer.testing import CliRunner

from automator.cli import app
from automator.console import create_app
from automator.console.auth import hash_password
from automator.store import Store, messages, users
from tests.conftest import utc
from tests.logins import PASSWORD, act, add_accounts, client_for, log_in, token_in

LOGIN_TIME = utc("2026-11-20 01:00")
COOKIE = "automator_console"


# Every test here logs in or adds users: with the cheapest Argon2 settings.
pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


@pytest.fixture
def clock() -> Iterator[Any]:
    """The console's clock (and every other), stopped at LOGIN_TIME until a test moves it."""
    with freeze_time(LOGIN_TIME) as frozen:
        yield frozen


@pytest.fixture
def console_app(project, store, clock) -> Any:
    return create_app(project, store)


@pytest.fixture
def accounts(store: Store) -> None:
    add_accounts(store, LOGIN_TIME)


@pytest.fixture
def browser(console_app: Any, accounts: None) -> Callable[[str], TestClient]:
    """`browser("sam")`: a new browser in which sam has logged in."""

    def open_as(name: str) -> TestClient:
        client = client_for(console_app)
        assert log_in(client, name).status_code == 303
        return client

    return open_as


@pytest.fixture
def cli(project_dir: Path, environ: dict[str, str]) -> Callable[..., Any]:
    """The real `automator` CLI in the project folder, with what it reads from stdin."""

    def run(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(app, ["--project", str(project_dir), *args], input=input)

    return run


def logged_in(client: TestClient) -> bool:
    response = client.get("/queue")
    assert response.status_code in (200, 303)
    return response.status_code == 200


def replayed(console_app: Any, cookie: str) -> TestClient:
    """Another browser holding a copy of a session cookie."""
    client = client_for(console_app)
    client.cookies.set(COOKIE, cookie)
    return client


# ---------------------------------------------------------------- logging out


def test_a_session_cookie_replayed_after_logout_is_refused(browser, console_app) -> None:
    sam = browser("sam")
    copy = sam.cookies[COOKIE]

    assert act(sam, "/logout").status_code == 303

    assert not logged_in(replayed(console_app, copy))


def test_logging_out_ends_the_users_sessions_in_every_browser(browser) -> None:
    laptop, phone = browser("sam"), browser("sam")

    act(laptop, "/logout")

    assert not logged_in(phone)


def test_logging_out_leaves_other_users_logged_in(browser) -> None:
    sam, ada = browser("sam"), browser("ada")

    act(sam, "/logout")

    assert logged_in(ada)


def test_after_logging_out_one_can_log_in_again(browser) -> None:
    sam = browser("sam")
    act(sam, "/logout")

    assert log_in(sam, "sam").status_code == 303
    assert logged_in(sam)


def test_the_login_form_shows_for_a_session_that_has_ended(browser, console_app) -> None:
    sam = browser("sam")
    copy = sam.cookies[COOKIE]
    act(sam, "/logout")
    stale = replayed(console_app, copy)

    form = stale.get("/login")

    assert form.status_code == 200
    assert log_in(stale, "sam").status_code == 303


# ---------------------------------------------------------------- operators end sessions


def test_removing_a_user_ends_their_sessions(browser, cli) -> None:
    sam, ada = browser("sam"), browser("ada")

    assert cli("users", "remove", "sam").exit_code == 0

    assert not logged_in(sam)
    assert logged_in(ada)


def test_changing_a_password_ends_the_users_sessions(browser, cli) -> None:
    sam, ada = browser("sam"), browser("ada")
    new_password = "a new and longer password"

    result = cli("users", "passwd", "sam", "--password-stdin", input=f"{new_password}\n")

    assert result.exit_code == 0, result.output
    assert not logged_in(sam)
    assert logged_in(ada)
    assert log_in(sam, "sam", new_password).status_code == 303


def test_changing_a_role_ends_the_users_sessions_and_the_new_one_applies_at_login(
    browser, cli, queued_message
) -> None:
    sam = browser("sam")

    assert cli("users", "role", "sam", "admin").exit_code == 0

    assert not logged_in(sam)
    log_in(sam, "sam")
    page = sam.get(f"/messages/{queued_message}").text
    assert f'formaction="/messages/{queued_message}/cancel"' in page


def test_a_cookie_of_a_removed_user_does_not_log_in_a_new_user_of_the_same_name(
    browser, console_app, cli, store
) -> None:
    copy = browser("sam").cookies[COOKIE]
    cli("users", "remove", "sam")
    with store.session() as session:
        users.add(session, "sam", hash_password("someone else's password"), "admin", LOGIN_TIME)

    assert not logged_in(replayed(console_app, copy))


# ---------------------------------------------------------------- lifetime


def test_a_session_lasts_until_12_hours_after_login(browser, clock) -> None:
    sam = browser("sam")

    clock.tick(timedelta(hours=12) - timedelta(seconds=1))

    assert logged_in(sam)


def test_a_session_ends_12_hours_after_login(browser, clock) -> None:
    sam = browser("sam")

    clock.tick(timedelta(hours=12))

    assert not logged_in(sam)


def test_writing_the_cookie_again_does_not_extend_the_session(browser, clock) -> None:
    sam = browser("sam")
    clock.tick(timedelta(hours=11))
    response = act(sam, "/preferences/timezone", zone="Europe/London", next="/queue")
    assert response.status_code == 303 and COOKIE in response.headers["set-cookie"]

    clock.tick(timedelta(hours=1))

    assert not logged_in(sam)


def test_a_new_login_starts_a_new_12_hours(browser, clock) -> None:
    sam = browser("sam")
    clock.tick(timedelta(hours=13))
    assert not logged_in(sam)

    assert log_in(sam, "sam").status_code == 303
    clock.tick(timedelta(hours=11))

    assert logged_in(sam)


def test_an_ended_session_cannot_post_with_its_old_csrf_token(browser, console_app, queued_message) -> None:
    sam = browser("sam")
    copy, token = sam.cookies[COOKIE], token_in(sam.get("/rules"))
    act(sam, "/logout")
    stale = replayed(console_app, copy)

    response = stale.post(f"/messages/{queued_message}/hold", data={"csrf_token": token, "reason": "x"})

    assert response.status_code in (401, 403)


@pytest.fixture
def queued_message(store: Store, make_contact) -> int:
    contact = make_contact("lan@example.com", _now=LOGIN_TIME)
    with store.session() as session:
        return messages.enqueue(
            session,
            {
                "rule_id": "abandoned_cart",
                "contact_id": contact,
                "email": "lan@example.com",
                "occurrence": "cart-1",
                "occurred_at": LOGIN_TIME,
                "status": "queued",
                "due_at": LOGIN_TIME,
                "send_at": LOGIN_TIME + timedelta(hours=10),
                "expires_at": LOGIN_TIME + timedelta(days=1),
                "subject": "Reminder",
                "created_at": LOGIN_TIME,
            },
            "queued",
        )


def test_a_reason_typed_after_the_session_ended_is_kept_through_the_login(
    browser, clock, queued_message, store
):
    sam = browser("sam")
    page = sam.get(f"/messages/{queued_message}")
    clock.tick(timedelta(hours=13))  # sam types the reason, comes back the next morning, clicks Hold
    typed = "Khách hàng <b>gọi</b> điện: chờ đến thứ Hai"

    refused = sam.post(
        f"/messages/{queued_message}/hold",
        data={"csrf_token": token_in(page), "back": f"/messages/{queued_message}", "reason": typed},
    )

    assert refused.status_code == 401
    assert "Your session has ended: log in again. The reason you typed is kept" in refused.text
    login = {"name": "sam", "password": PASSWORD, "csrf_token": token_in(refused)}
    hidden = dict(re.findall(r'name="(next|draft)" value="([^"]*)"', refused.text))
    assert hidden == {"next": f"/messages/{queued_message}", "draft": html.escape(typed)}
    back = sam.post("/login", data={**login, "next": hidden["next"], "draft": typed})
    assert back.headers["location"] == f"/messages/{queued_message}"
    again = sam.get(back.headers["location"]).text
    assert f">{html.escape(typed, quote=False)}</textarea>" in again
    assert "></textarea>" in sam.get(back.headers["location"]).text  # filled in once, not ever after
    with store.session() as session:
        assert messages.get(session, queued_message).status == "queued"  # nothing done unasked


def test_a_form_sent_after_the_session_ended_never_returns_to_another_site(browser, clock, queued_message):
    sam = browser("sam")
    page = sam.get(f"/messages/{queued_message}")
    clock.tick(timedelta(hours=13))

    refused = sam.post(
        f"/messages/{queued_message}/hold",
        data={"csrf_token": token_in(page), "back": "//evil.example/x", "reason": "asked"},
    )

    assert 'name="next" value="/queue"' in refused.text


@pytest.mark.parametrize(
    "sent_from",
    [{"Sec-Fetch-Site": "same-origin"}, {"Origin": "http://testserver"}],
    ids=["sec-fetch-site", "origin"],
)
def test_a_reason_typed_after_the_session_cookie_is_gone_is_kept_through_the_login(
    browser, queued_message, store, sent_from
):
    sam = browser("sam")
    page = sam.get(f"/messages/{queued_message}")
    sam.cookies.clear()  # the cookie expired and the browser deleted it, or sam cleared it
    typed = "Khách hàng gọi điện: chờ đến thứ Hai"

    refused = sam.post(
        f"/messages/{queued_message}/hold",
        data={"csrf_token": token_in(page), "back": f"/messages/{queued_message}", "reason": typed},
        headers=sent_from,
    )

    assert refused.status_code == 401
    assert "Your session has ended: log in again. The reason you typed is kept" in refused.text
    hidden = dict(re.findall(r'name="(next|draft)" value="([^"]*)"', refused.text))
    assert hidden == {"next": f"/messages/{queued_message}", "draft": typed}
    login = {"name": "sam", "password": PASSWORD, "csrf_token": token_in(refused), **hidden}
    back = sam.post("/login", data=login)
    assert back.headers["location"] == f"/messages/{queued_message}"
    assert f">{typed}</textarea>" in sam.get(back.headers["location"]).text
    with store.session() as session:
        assert messages.get(session, queued_message).status == "queued"  # nothing done unasked


@pytest.mark.parametrize(
    "sent_from",
    [{}, {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, {"Origin": "null"}],
    ids=["unsaid", "another-site", "opaque"],
)
def test_a_form_without_a_session_not_sent_from_the_console_is_still_refused(
    console_app, queued_message, sent_from
):
    stranger = client_for(console_app)

    refused = stranger.post(
        f"/messages/{queued_message}/hold",
        data={"csrf_token": "guessed", "back": f"/messages/{queued_message}", "reason": "planted"},
        headers=sent_from,
    )

    assert refused.status_code == 403
    assert "planted" not in refused.text
