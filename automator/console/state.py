"""What every console request needs: the project, the store, the engine (for the queue
actions), the clock, the session cookie and the page templates; and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import fastapi
import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from automator.clock import Clock
from automator.console import display
from automator.console.auth import Forbidden, LoginRequired, Sessions, Viewer, is_current
from automator.engine import Engine
from automator.ids import MAX_ID
from automator.project import Project
from automator.status import HELD_WHY
from automator.store import Store, users
from automator.support import MAX_REASON

# A row's id in a URL: a number beyond any id's range names no row, and is a wrong value
# (400) rather than an error inside the database driver.
RowId = Annotated[int, fastapi.Path(ge=1, le=MAX_ID)]
Cursor = Annotated[int | None, fastapi.Query(ge=1, le=MAX_ID)]  # where a page of rows starts

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Console:
    project: Project
    store: Store
    engine: Engine
    clock: Clock
    sessions: Sessions
    pages: jinja2.Environment

    @property
    def default_zone(self) -> str:
        return self.project.settings.timezone


def page_templates() -> jinja2.Environment:
    """The console's own pages. Autoescaped: contacts, events and templates are not trusted."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(display.FILTERS)
    env.globals["query"] = query
    env.globals["MAX_REASON"] = MAX_REASON
    env.globals["HELD_WHY"] = HELD_WHY
    return env


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def current_viewer(request: Request) -> Viewer:
    """The logged-in user, read again from the store so that a user removed, given a new
    password or role, or logged out elsewhere is out at once; and 12 hours after logging in."""
    console = console_of(request)
    session = console.sessions.read(request)
    name = session.get("user")
    if not isinstance(name, str):
        raise LoginRequired("log in first")
    with console.store.session() as db:
        user = users.get(db, name)
    if user is None or not is_current(session, user, console.clock()):
        raise LoginRequired("log in first")
    zone = display.zone_named(session.get("tz"), console.default_zone)
    return Viewer(user.name, user.role, str(session.get("csrf", "")), zone)


def viewer_or_none(request: Request) -> Viewer | None:
    """The logged-in user, or None for a visitor (or a session that has ended)."""
    try:
        return current_viewer(request)
    except LoginRequired:
        return None


def allowed(action: str) -> Callable[..., Viewer]:
    """A dependency: the viewer, when their role allows `action`; else 403."""

    def check(viewer: Viewer = Depends(current_viewer)) -> Viewer:
        if not viewer.can(action):
            raise Forbidden(f"the {viewer.role} role cannot {action}; ask an admin")
        return viewer

    return check


def render(
    request: Request,
    viewer: Viewer | None,
    template: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    console = console_of(request)
    zone = viewer.zone if viewer else display.zone_named(None, console.default_zone)
    values = {
        "viewer": viewer,
        "csrf": viewer.csrf if viewer else "",
        "zone": zone,
        "zones": display.ZONES,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "section": "",
        "notice": None,
        "error": None,
        "contact_query": "",
        "reason": "",  # the reason typed into a form that was refused, to correct rather than retype
        **context,
    }
    session = console.sessions.read(request) if viewer else {}
    draft = session.pop("draft", None)  # the first page after a login takes it, or drops it
    if isinstance(draft, dict) and draft.get("path") == values["here"] and not values["reason"]:
        values["reason"] = draft.get("reason", "")
    response = HTMLResponse(console.pages.get_template(template).render(values), status_code=status)
    if draft is not None:
        console.sessions.write(request, response, session)
    return response


def query(values: dict[str, Any], **changes: Any) -> str:
    """A query string of `values` with `changes`, leaving out empty ones: `?status=held&rule=x`."""
    merged = {key: value for key, value in {**values, **changes}.items() if value not in (None, "")}
    return f"?{urlencode(merged)}" if merged else "?"


def local_path(value: str | None, default: str = "/queue") -> str:
    """Where to go after logging in: only a path on this site, never another site."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return default
