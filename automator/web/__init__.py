"""HTTP endpoints served by `automator run --listen`: one-click unsubscribe and health."""

from automator.web.unsubscribe import create_app

__all__ = ["create_app"]
