"""How an answer shows a time: in UTC ("2026-11-20 03:00Z") at the command line, in the
viewer's zone on the console (an explanation, a refused action). The zone is set once for
the answer being made (`shown_in`), so that every part of it shows its times alike
without each being handed the zone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, tzinfo

from automator.timestamps import shown_at

_zone: ContextVar[tzinfo | None] = ContextVar("shown_in", default=None)


def at(moment: datetime | None) -> str:
    return shown_at(moment, _zone.get())


@contextmanager
def shown_in(zone: tzinfo | None) -> Iterator[None]:
    """Times shown in `zone` (None: UTC, "…Z") while the answer is made."""
    token = _zone.set(zone)
    try:
        yield
    finally:
        _zone.reset(token)


def shown_zone() -> tzinfo | None:
    """The zone the answer being made shows its times in (None: UTC)."""
    return _zone.get()
