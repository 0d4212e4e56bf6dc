"""The support console: a web app where support staff look up contacts and messages and
hold, release, cancel or send queued messages, every action with a reason and audited."""

from automator.console.app import create_app

__all__ = ["create_app"]
