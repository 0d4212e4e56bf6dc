"""`GET /c/<token>`: a tracked link (`track_clicks`). A genuine token counts a click for its
message and redirects (302) to the URL it signs; anything else is a 404 that redirects
nowhere, so the endpoint can never send a reader to a site automator did not link to."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from automator import clicks as links
from automator.clock import Clock
from automator.project import Project
from automator.store import Store, clicks

# The token travels in the URL: keep it out of caches and the next site's Referer header.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def router(project: Project, store: Store, clock: Clock) -> APIRouter:
    """The redirect route; links signed with a previous secret keep working, as unsubscribe
    links do."""
    routes = APIRouter()
    secrets = project.settings.unsubscribe_secrets

    @routes.get("/c/{token}")
    def follow(token: str) -> Response:
        found = links.read_token(secrets, token)
        if found is not None:
            message_id, url = found
            with store.session() as session:
                counted = clicks.record(session, message_id, clock())
            if counted:
                return RedirectResponse(url, status_code=302, headers=_PRIVATE)
        return PlainTextResponse("This link is not valid.", status_code=404, headers=_PRIVATE)

    return routes
