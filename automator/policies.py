"""Send-time policies, as pure arithmetic: quiet hours, frequency cap, retry backoff."""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automator.config import Settings


class Located(Protocol):
    """A contact as far as quiet hours go: an ORM Contact, a dispatch Recipient or a row."""

    @property
    def timezone(self) -> str | None: ...


def contact_zone(settings: Settings, contact: Located) -> ZoneInfo:
    """The contact's own time zone, or the project's when it has none (or an unknown one)."""
    return (_zone(contact.timezone) if contact.timezone else None) or settings.zone


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def planned_send_at(settings: Settings, contact: Located, at: datetime) -> datetime:
    """`at`, moved to the end of the contact's quiet hours when it falls inside them."""
    if settings.quiet_hours is None:
        return at
    quiet = quiet_until(
        at, contact_zone(settings, contact), settings.quiet_hours.start, settings.quiet_hours.end
    )
    return quiet or at


def quiet_until(at: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """When `at` falls in the daily quiet window (local time), the window's end; else None.

    The window may wrap midnight (21:00–08:00). The result is UTC.
    """
    local = at.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    wraps = start > end
    inside = (clock >= start or clock < end) if wraps else (start <= clock < end)
    if not inside:
        return None
    end_day = local.date() + timedelta(days=1) if wraps and clock >= start else local.date()
    # Build the local wall time through the zone, so a DST change is handled by zoneinfo.
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)


def cap_until(sent_times: list[datetime], limit: int, window: timedelta, now: datetime) -> datetime | None:
    """When `limit` messages were already sent in the rolling `window` before now, the time
    the oldest of them leaves the window; else None."""
    recent = sorted(t for t in sent_times if t > now - window)
    if len(recent) < limit:
        return None
    return recent[len(recent) - limit] + window


def retry_at(
    attempt: int,
    now: datetime,
    base: timedelta = timedelta(minutes=1),
    ceiling: timedelta = timedelta(hours=6),
    rng: random.Random | None = None,
) -> datetime:
    """Exponential backoff with full jitter: attempt 1 waits up to 1 min, 2 up to 2 min, …"""
    span = min(base * (2 ** (attempt - 1)), ceiling)
    fraction = (rng or random).uniform(0.5, 1.0)
    return now + span * fraction
