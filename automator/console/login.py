"""Logging in and out, and the viewer's time zone (kept in the session).

Password guessing is slowed down (auth.lockout): a name or an address that failed too often
lately is answered 429 with a Retry-After, before any password is checked. Every failure and
every lockout goes to the log and to the audit log.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from automator.console import display
from automator.console.auth import FAILURES_KEPT, Lockout, lockout, logged_in, password_matches
from automator.console.csrf import new_token
from automator.console.state import console_of, local_path, render, viewer_or_none
from automator.store import Store, audit, users
from automator.support import MAX_REASON

log = logging.getLogger("automator.console")

router = APIRouter()


@dataclass(frozen=True)
class Attempt:
    """One try at the login form: the name typed, the client's address, when."""

    name: str
    address: str
    at: datetime

    @property
    def shown_name(self) -> str:
        """The name as the log and the audit log show it: anyone can type a long one."""
        return self.name[: users.NAME_KEPT] or "(no name)"

    @property
    def fields(self) -> dict[str, str]:
        return {"name": self.shown_name, "address": self.address}


@router.get("/login")
def login_form(request: Request, next: str = "/queue") -> Response:
    if viewer_or_none(request) is not None:
        return RedirectResponse(local_path(next), status_code=303)
    return login_page(request, next)


def login_page(
    request: Request, next: str, status: int = 200, error: str | None = None, draft: str = ""
) -> Response:
    """The login form. Its CSRF token lives in a session of its own until someone logs in.
    `draft`: a reason typed into a form whose session had ended, carried through the login
    to be filled in again on the page it was typed on (`next`)."""
    console = console_of(request)
    session = console.sessions.read(request)
    csrf = session.get("csrf") or new_token()
    response = _form_again(request, status, error, csrf=csrf, name="", next=next, draft=draft)
    # Whatever an ended session said about its login is dropped with it.
    console.sessions.write(request, response, {"csrf": csrf, "tz": session.get("tz")})
    return response


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/queue",
    draft: Annotated[str, Form(max_length=MAX_REASON)] = "",
) -> Response:
    console = console_of(request)
    session = console.sessions.read(request)
    attempt = Attempt(name.strip(), request.client.host if request.client else "unknown", console.clock())
    wait, locks = _claim(console.store, attempt)
    if wait is not None:
        return _too_many(request, attempt, wait, csrf=session["csrf"], next=next, draft=draft)
    with console.store.session() as db:
        user = users.get(db, attempt.name)
    # An unknown name is checked against a stand-in hash: it costs as long as a wrong password.
    if not password_matches(user.password_hash if user else None, password):
        _failed(console.store, attempt, locks)
        return _form_again(
            request, 401, "Wrong name or password.", csrf=session["csrf"], name=name, next=next, draft=draft
        )
    assert user is not None
    with console.store.session() as db:
        users.forget_failures(db, attempt.name, attempt.address)
    log.info("logged in", extra={"fields": attempt.fields})
    response = RedirectResponse(local_path(next), status_code=303)
    # A fresh token at login: one seen before logging in is worth nothing after.
    fresh = {**logged_in(user, attempt.at), "csrf": new_token(), "tz": session.get("tz")}
    if draft.strip():
        fresh["draft"] = {"path": local_path(next), "reason": draft}
    console.sessions.write(request, response, fresh)
    return response


def _claim(store: Store, attempt: Attempt) -> tuple[timedelta | None, dict[str, Lockout]]:
    """How long the name or the address must still wait, if it must; else the attempt is
    written down as failed before its password is checked (and struck off if it matches), so
    that guesses sent all at once count against each other. Also what a failure would lock.

    In one transaction that, on SQLite, holds the write lock from its start: two console
    processes see each other's failures."""
    session = store.writing()
    try:
        since = attempt.at - FAILURES_KEPT
        history = {
            "name": users.failures_of_name(session, attempt.name, since),
            "address": users.failures_from(session, attempt.address, since),
        }
        ends = [found.until for times in history.values() if (found := lockout(times))]
        if (until := max(ends, default=attempt.at)) > attempt.at:
            return until - attempt.at, {}
        users.record_failure(session, attempt.name, attempt.address, attempt.at)
        users.forget_failures_before(session, since)
        session.commit()
    finally:
        session.close()
    after = {key: lockout([*times, attempt.at]) for key, times in history.items()}
    return None, {key: found for key, found in after.items() if found and found.until > attempt.at}


def _failed(store: Store, attempt: Attempt, locks: dict[str, Lockout]) -> None:
    """Log and audit a failed login, and the lockout it caused if it did."""
    actor = attempt.shown_name
    log.warning("login failed", extra={"fields": attempt.fields})
    with store.session() as db:
        audit.record(db, attempt.at, actor, "login failed", f"from {attempt.address}")
        if not locks:
            return
        wait = _seconds(max(found.until for found in locks.values()) - attempt.at)
        fields = {**attempt.fields, "locked": sorted(locks), "wait_seconds": wait}
        log.warning("login locked", extra={"fields": fields})
        what = {"name": f"the name {actor}", "address": f"the address {attempt.address}"}
        locked = " and ".join(
            f"{what[key]} after {found.failures} failed logins" for key, found in locks.items()
        )
        audit.record(
            db,
            attempt.at,
            actor,
            "login locked",
            f"{locked}, the last from {attempt.address}: next try in {wait} s",
        )


def _too_many(
    request: Request, attempt: Attempt, wait: timedelta, csrf: str, next: str, draft: str
) -> Response:
    seconds = _seconds(wait)
    log.warning(
        "login refused: too many failures", extra={"fields": {**attempt.fields, "retry_after": seconds}}
    )
    when = f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
    text = f"Too many failed logins: try again in {when}."
    response = _form_again(request, 429, text, csrf=csrf, name=attempt.name, next=next, draft=draft)
    response.headers["Retry-After"] = str(seconds)
    return response


def _form_again(
    request: Request, status: int, error: str | None, csrf: str, name: str, next: str, draft: str
) -> Response:
    return render(
        request,
        None,
        "login.html",
        status=status,
        csrf=csrf,
        next=local_path(next),
        name=name,
        error=error,
        draft=draft,
    )


def _seconds(wait: timedelta) -> int:
    return max(1, math.ceil(wait.total_seconds()))


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session, on the server too: every session of the user ends (in every browser),
    so that a copy of the cookie is worth nothing after it."""
    console = console_of(request)
    viewer = viewer_or_none(request)
    if viewer is not None:
        with console.store.session() as db:
            users.end_sessions(db, viewer.name)
        log.info("logged out", extra={"fields": {"name": viewer.name}})
    response = RedirectResponse("/login", status_code=303)
    console.sessions.clear(request, response)
    return response


@router.post("/preferences/timezone")
def choose_zone(
    request: Request, zone: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/queue"
) -> Response:
    """Show times in another zone from now on (for this browser). The login time is kept as
    it was: writing the cookie does not make the session last longer."""
    console = console_of(request)
    session = console.sessions.read(request)
    response = RedirectResponse(local_path(next), status_code=303)
    chosen = display.zone_named(zone, console.default_zone)
    console.sessions.write(request, response, {**session, "tz": chosen.key})
    return response
