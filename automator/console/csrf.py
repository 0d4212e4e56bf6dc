"""CSRF protection: a random token per session, sent back in a hidden field of every form.

Every request that is not GET or HEAD must carry it, logged in or not (the login form has
one too), or it is refused with 403 before any route runs. Another site can make a
browser post a form, but it cannot read the token out of a console page.

A form sent from a console page after the session cookie itself is gone (expired, or
cleared) has no session to check its token against: when the browser says the form comes
from the console itself, it is answered as a session that has ended (the login, with the
reason typed kept; see `app._handle_errors`), never acted on. The browser's word is the
`Sec-Fetch-Site` or `Origin` header, which no page can set; another site's form still gets
403.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from automator.console.auth import Forbidden, LoginRequired

FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def protect(request: Request) -> None:
    """An app-wide dependency: refuse any unsafe request whose form lacks the session's token."""
    if request.method in SAFE_METHODS:
        return
    expected = request.app.state.console.sessions.read(request).get("csrf")
    if expected is None and _from_the_console(request):
        raise LoginRequired("the session is gone")
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


def _from_the_console(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this console."""
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    return request.headers.get("origin") == f"{request.url.scheme}://{request.url.netloc}"
