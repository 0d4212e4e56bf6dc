"""CSRF protection: a random token per session, sent back in a hidden field of every form.

Every request that is not GET or HEAD must carry it, logged in or not (the login form has
one too), or it is refused with 403 before any route runs. Another site can make a
browser post a form, but it cannot read the token out of a console page.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from automator.console.auth import Forbidden

FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def protect(request: Request) -> None:
    """An app-wide dependency: refuse any unsafe request whose form lacks the session's token."""
    if request.method in SAFE_METHODS:
        return
    expected = request.app.state.console.sessions.read(request).get("csrf")
    form = await request.form()
    given = form.get(FIELD)
    if not (
        isinstance(expected, str)
        and isinstance(given, str)
        and hmac.compare_digest(expected.encode(), given.encode())
    ):
        raise Forbidden(
            "this form has expired or did not come from the console; reload the page and try again"
        )
