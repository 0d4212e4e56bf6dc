"""Guessing passwords at the console's login form is slowed down: after 5 failed logins for
one name, or from one address, within 15 minutes, further attempts are answered 429 with a
Retry-After, and each further failure doubles the wait (up to an hour). Failures are kept
in the database, so every console process on it counts them; each failure and each lockout
is logged and in the audit log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from automator.console import create_app
from automator.store import Store, audit
from tests.conftest import utc
from tests.logins import PASSWORD, add_accounts, client_for, log_in

START = utc("2026-11-20 01:00")
WRONG = "not the password"
MINUTE = timedelta(minutes=1)


# Every test here logs in or adds users: with the cheapest Argon2 settings.
pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


@pytest.fixture
def clock() -> Iterator[Any]:
    with freeze_time(START) as frozen:
        yield frozen


@pytest.fixture
def accounts(store: Store) -> None:
    add_accounts(store, START)


@pytest.fixture
def console_app(project, store, clock, accounts) -> Any:
    return create_app(project, store)


@pytest.fixture
def attempt(console_app: Any) -> Callable[..., Any]:
    """`attempt(name, password, address=…)`: a login from a new browser at that address."""

    def log_in_from(name: str, password: str = WRONG, address: str = "203.0.113.7", app: Any = None) -> Any:
        return log_in(client_for(app or console_app, client=(address, 50000)), name, password)

    return log_in_from


def fail(attempt: Callable[..., Any], times: int, name: str = "sam", **where: str) -> None:
    for _ in range(times):
        assert attempt(name, WRONG, **where).status_code == 401


def addresses(n: int) -> list[str]:
    return [f"198.51.100.{i}" for i in range(1, n + 1)]


def retry_after(response: Any) -> int:
    assert response.status_code == 429, response.text
    return int(response.headers["retry-after"])


# ---------------------------------------------------------------- one name


def test_four_failed_logins_for_a_name_lock_nothing(attempt) -> None:
    for address in addresses(4):
        fail(attempt, 1, address=address)

    assert attempt("sam", PASSWORD).status_code == 303


def test_five_failed_logins_for_a_name_lock_it_even_for_the_right_password(attempt) -> None:
    for address in addresses(5):
        fail(attempt, 1, address=address)

    response = attempt("sam", PASSWORD, address="192.0.2.99")

    assert retry_after(response) == 60
    assert "Too many failed logins" in response.text
    assert attempt("ada", PASSWORD, address="192.0.2.99").status_code == 303  # others are not locked


def test_failures_spread_over_more_than_15_minutes_lock_nothing(attempt, clock) -> None:
    for address in addresses(5):
        fail(attempt, 1, address=address)
        clock.tick(timedelta(minutes=4))

    assert attempt("sam", PASSWORD).status_code == 303


def test_the_right_password_logs_in_once_the_wait_is_over(attempt, clock) -> None:
    fail(attempt, 5)
    clock.tick(59 * timedelta(seconds=1))
    assert attempt("sam", PASSWORD).status_code == 429

    clock.tick(timedelta(seconds=1))

    assert attempt("sam", PASSWORD).status_code == 303


def test_each_further_failure_doubles_the_wait(attempt, clock) -> None:
    fail(attempt, 5)
    waits = [retry_after(attempt("sam", PASSWORD))]
    for _ in range(3):
        clock.tick(timedelta(seconds=waits[-1]))
        fail(attempt, 1)
        waits.append(retry_after(attempt("sam", PASSWORD)))

    assert waits == [60, 120, 240, 480]


def test_the_wait_never_passes_an_hour(attempt, clock) -> None:
    fail(attempt, 5)
    waits = [retry_after(attempt("sam", PASSWORD))]
    for _ in range(9):
        clock.tick(timedelta(seconds=waits[-1]))
        fail(attempt, 1)
        waits.append(retry_after(attempt("sam", PASSWORD)))

    assert max(waits) == 3600
    assert waits[-3:] == [3600, 3600, 3600]


def test_an_hour_without_failures_after_a_wait_starts_the_count_again(attempt, clock) -> None:
    fail(attempt, 5)
    clock.tick(MINUTE + timedelta(hours=1))

    fail(attempt, 4)

    assert attempt("sam", PASSWORD).status_code == 303


def test_a_failure_within_the_hour_after_a_wait_still_doubles_it(attempt, clock) -> None:
    fail(attempt, 5)
    clock.tick(MINUTE + timedelta(minutes=59))

    fail(attempt, 1)

    assert retry_after(attempt("sam", PASSWORD)) == 120


def test_retry_after_counts_down(attempt, clock) -> None:
    fail(attempt, 5)
    clock.tick(timedelta(seconds=45))

    assert retry_after(attempt("sam", PASSWORD)) == 15


def test_an_attempt_refused_with_429_does_not_lengthen_the_wait(attempt, clock) -> None:
    fail(attempt, 5)
    for _ in range(10):
        attempt("sam", WRONG)
    clock.tick(MINUTE)

    assert attempt("sam", PASSWORD).status_code == 303


def test_an_unknown_name_is_locked_like_a_known_one(attempt) -> None:
    for address in addresses(5):
        fail(attempt, 1, name="mallory", address=address)

    assert retry_after(attempt("mallory", WRONG, address="192.0.2.99")) == 60


# ---------------------------------------------------------------- one address


def test_five_failed_logins_from_an_address_lock_it_for_every_name(attempt) -> None:
    for name in ("root", "admin", "test", "guest", "sam"):
        fail(attempt, 1, name=name, address="203.0.113.66")

    assert retry_after(attempt("ada", PASSWORD, address="203.0.113.66")) == 60
    assert attempt("ada", PASSWORD, address="192.0.2.1").status_code == 303


def test_a_successful_login_does_not_reset_the_address_count_for_other_names(attempt) -> None:
    for name in ("root", "admin", "test", "guest"):
        fail(attempt, 1, name=name, address="203.0.113.66")
    assert attempt("ada", PASSWORD, address="203.0.113.66").status_code == 303

    fail(attempt, 1, name="oracle", address="203.0.113.66")

    assert attempt("sam", PASSWORD, address="203.0.113.66").status_code == 429


def test_a_successful_login_forgets_the_users_own_typos(attempt) -> None:
    fail(attempt, 4)
    assert attempt("sam", PASSWORD).status_code == 303

    fail(attempt, 4)

    assert attempt("sam", PASSWORD).status_code == 303


# ---------------------------------------------------------------- shared, logged and audited


def test_every_console_process_on_the_database_counts_the_same_failures(
    project, store, attempt, console_app
) -> None:
    other_process = create_app(project, store)
    fail(attempt, 3)
    for _ in range(2):
        assert attempt("sam", WRONG, app=other_process).status_code == 401

    assert attempt("sam", PASSWORD).status_code == 429
    assert attempt("sam", PASSWORD, app=other_process).status_code == 429


@pytest.fixture
def console_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What the console logs. An `automator run` or `console` run in this process earlier
    (configure_logging) keeps automator's lines from the root logger, where caplog listens."""
    logger = logging.getLogger("automator")
    propagate = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.INFO, logger="automator.console")
    yield caplog
    logger.propagate = propagate


def test_every_failure_is_logged_and_audited(attempt, console_log, store) -> None:
    fail(attempt, 2, name="sam", address="203.0.113.7")

    failures = [r for r in console_log.records if r.getMessage() == "login failed"]
    assert len(failures) == 2
    assert all(r.levelno == logging.WARNING for r in failures)
    assert failures[0].fields == {"name": "sam", "address": "203.0.113.7"}  # type: ignore[attr-defined]
    with store.session() as session:
        entries = audit.for_action(session, "login failed")
    assert [(e.actor, e.reason) for e in entries] == [("sam", "from 203.0.113.7")] * 2


def test_every_lockout_is_logged_and_audited(attempt, console_log, store) -> None:
    fail(attempt, 5, name="sam", address="203.0.113.7")

    [lockout] = [r for r in console_log.records if r.getMessage() == "login locked"]
    assert lockout.levelno == logging.WARNING
    assert lockout.fields["name"] == "sam" and lockout.fields["wait_seconds"] == 60  # type: ignore[attr-defined]
    with store.session() as session:
        [entry] = audit.for_action(session, "login locked")
    assert entry.actor == "sam"
    assert "5 failed logins" in entry.reason and "203.0.113.7" in entry.reason and "60 s" in entry.reason


def test_an_attempt_refused_while_locked_is_logged(attempt, console_log) -> None:
    fail(attempt, 5)

    attempt("sam", PASSWORD)

    assert [r.getMessage() for r in console_log.records][-1] == "login refused: too many failures"
