"""The console's FastAPI app: `create_app(project, store, clock)`.

Served by `automator console`, or by `automator run --console` inside the daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from automator.clock import Clock, utcnow
from automator.config import require_secret
from automator.console import actions, csrf, login, pages, results
from automator.console.auth import Forbidden, LoginRequired, Sessions
from automator.console.state import Console, page_templates, render, viewer_or_none
from automator.emails import OutgoingEmail
from automator.engine import Engine
from automator.errors import AutomatorError, NotFoundError
from automator.project import Project
from automator.store import Store
from automator.support import MAX_REASON
from automator.transports import Transport

STATIC = Path(__file__).parent / "static"

# Console pages load only their own script and stylesheet. Styles may be inline because the
# email preview (an iframe srcdoc, which inherits this policy) is styled inline; the
# iframe's empty `sandbox` keeps every script in it from running whatever this says.
POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        "font-src 'self' data: https:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages hold customers' personal data
}


class _NoDelivery(Transport):
    """The console never sends: "send now" puts a message first in line for the daemon."""

    async def send(self, email: OutgoingEmail) -> None:
        raise AutomatorError("the console does not send email; the daemon does")

    async def close(self) -> None:
        return None


def create_app(
    project: Project, store: Store, clock: Clock = utcnow, engine: Engine | None = None
) -> FastAPI:
    """The support console. Every page needs a login; every POST needs the session's CSRF token.
    Refuses (ConfigError) a secret anyone could know: with it, anyone could sign a login."""
    require_secret(project.settings, "the support console signs logins with it")
    app = FastAPI(
        title="automator console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(csrf.protect)],
    )
    app.state.console = Console(
        project=project,
        store=store,
        engine=engine or Engine(project, store, _NoDelivery()),
        clock=clock,
        sessions=Sessions(project.settings.secret),
        pages=page_templates(),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (login, pages, actions, results):
        app.include_router(module.router)
    _handle_errors(app)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app


def _handle_errors(app: FastAPI) -> None:
    async def login_required(request: Request, exc: Exception) -> Response:
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        # A form sent after the session ended: log in, and find the reason typed in it kept.
        form = await request.form()
        back, reason = form.get("back") or form.get("next"), form.get("reason") or form.get("draft")
        draft = reason[:MAX_REASON] if isinstance(reason, str) else ""
        text = "Your session has ended: log in again."
        if draft.strip():
            text += " The reason you typed is kept: it is filled in again, to send once more."
        return login.login_page(request, back if isinstance(back, str) else "/queue", 401, text, draft)

    async def forbidden(request: Request, exc: Exception) -> Response:
        return _error_page(request, 403, str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error_page(request, 404, str(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        return _error_page(request, 400, str(exc))

    async def invalid(request: Request, exc: Exception) -> Response:
        return _error_page(request, 400, "That request is missing something or has a wrong value.")

    async def no_such_page(request: Request, exc: Exception) -> Response:
        """An address or a method no route answers: the console's page, not FastAPI's JSON."""
        assert isinstance(exc, HTTPException)
        if exc.status_code not in UNROUTED:
            return await http_exception_handler(request, exc)
        response = _error_page(request, exc.status_code, UNROUTED[exc.status_code])
        response.headers.update(exc.headers or {})  # 405's Allow
        return response

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(AutomatorError, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, no_such_page)


UNROUTED = {
    404: "There is no such page in the console.",
    405: "This page does not take that kind of request; use the console's links and buttons.",
}


def _error_page(request: Request, status: int, text: str) -> Response:
    viewer = viewer_or_none(request)
    titles = {400: "Not done", 401: "Log in first", 403: "Not allowed", 404: "Not found", 405: "Not done"}
    title = titles[status]
    return render(request, viewer, "error.html", status=status, title=title, text=text)
