"""Times as people write them (ISO 8601) read into the aware UTC datetimes automator keeps.
Light on purpose: `--now` is read by every command that takes it."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_timestamp(value: Any, zone: tzinfo | None = None) -> datetime:
    """ISO 8601 → aware UTC datetime. A value without offset needs `zone`."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f'"{value}" is not an ISO 8601 time, e.g. 2026-11-20T10:00:00+07:00') from None
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 time")
    if parsed.tzinfo is None:
        if zone is None:
            raise ValueError(f'"{value}" has no time zone offset (add Z or +07:00)')
        parsed = parsed.replace(tzinfo=zone)
    return in_utc(parsed, value)


def in_utc(moment: datetime, given: Any) -> datetime:
    """An aware time in UTC; ValueError naming `given` (what was written) for one at the
    calendar's edge whose UTC time falls outside it (0001-01-01 east of Greenwich)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f'"{given}" is out of range: its UTC time is before year 1 or after 9999') from None


@functools.lru_cache(maxsize=1024)
def zone_named(name: str | None) -> ZoneInfo | None:
    """The IANA time zone `name`, or None for none or one this system does not know."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def shown_at(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """A time as the console and the command line show it in a line of text: to the minute
    in `zone` (the console's viewer's), else in UTC with a "Z"; "-" for none."""
    if moment is None:
        return "-"
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}" if zone is not None else f"{moment:%Y-%m-%d %H:%M}Z"
