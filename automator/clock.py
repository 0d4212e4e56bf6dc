"""The one real clock. Only the daemon, the CLI and the web apps ask it; everything else is
passed the time (or this function) so that tests can set it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
