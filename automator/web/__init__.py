"""HTTP endpoints served by `automator run --listen`: one-click unsubscribe and health, and
the HTTP API under /v1 (`automator.api`)."""

from __future__ import annotations

from fastapi import FastAPI

from automator.api.app import create_app as create_api
from automator.clock import Clock, utcnow
from automator.project import Project
from automator.store import Store
from automator.web import clicks, unsubscribe

__all__ = ["create_app"]


def create_app(project: Project, store: Store, clock: Clock = utcnow) -> FastAPI:
    """Unsubscribe and health, with the API mounted beside them: an app of its own, with its
    own error answers and OpenAPI document (`/v1/openapi.json`)."""
    app = unsubscribe.create_app(project, store, clock)
    app.include_router(clicks.router(project, store, clock))  # tracked links: /c/<token>
    app.mount("", create_api(project, store, clock))
    return app
