"""Logging in and out, and the viewer's time zone (kept in the session)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from automator.console import display
from automator.console.auth import password_matches
from automator.console.csrf import new_token
from automator.console.state import console_of, local_path, render
from automator.store import users

router = APIRouter()


@router.get("/login")
def login_form(request: Request, next: str = "/queue") -> Response:
    """The login form. Its CSRF token lives in a session of its own until someone logs in."""
    console = console_of(request)
    session = console.sessions.read(request)
    if session.get("user"):
        return RedirectResponse(local_path(next), status_code=303)
    csrf = session.get("csrf") or new_token()
    response = render(request, None, "login.html", csrf=csrf, next=local_path(next), name="")
    console.sessions.write(request, response, {**session, "csrf": csrf})
    return response


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/queue",
) -> Response:
    console = console_of(request)
    session = console.sessions.read(request)
    with console.store.session() as db:
        user = users.get(db, name.strip())
    if not password_matches(user.password_hash if user else None, password):
        return render(
            request,
            None,
            "login.html",
            status=401,
            csrf=session["csrf"],
            next=local_path(next),
            name=name,
            error="Wrong name or password.",
        )
    assert user is not None
    response = RedirectResponse(local_path(next), status_code=303)
    # A fresh token at login: one seen before logging in is worth nothing after.
    fresh = {"user": user.name, "csrf": new_token(), "tz": session.get("tz")}
    console.sessions.write(request, response, fresh)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    console_of(request).sessions.clear(request, response)
    return response


@router.post("/preferences/timezone")
def choose_zone(
    request: Request, zone: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/queue"
) -> Response:
    """Show times in another zone from now on (for this browser)."""
    console = console_of(request)
    session = console.sessions.read(request)
    response = RedirectResponse(local_path(next), status_code=303)
    chosen = display.zone_named(zone, console.default_zone)
    console.sessions.write(request, response, {**session, "tz": chosen.key})
    return response
