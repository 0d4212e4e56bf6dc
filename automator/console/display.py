"""How the console shows values: times in the viewer's time zone (UTC on hover), dates typed
in that zone, JSON attributes as their own text (Vietnamese stays Vietnamese)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from jinja2 import pass_context
from markupsafe import Markup, escape

ZONES = sorted(zone for zone in available_timezones() if "/" in zone or zone == "UTC")


def zone_named(name: object, default: str) -> ZoneInfo:
    """The zone the viewer chose, or `default` when none (or an unknown one) is given."""
    return ZoneInfo(name if isinstance(name, str) and name in ZONES else default)


@pass_context
def when(context: Any, value: datetime | None) -> Markup:
    """`<time>` in the viewer's zone, with the UTC time in its title (shown on hover)."""
    if value is None:
        return Markup('<span class="muted">–</span>')
    utc = value.astimezone(UTC)
    local = value.astimezone(context["zone"])
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S UTC"), local.strftime("%Y-%m-%d %H:%M")
    )


# A time as the engine writes it into a history note: datetime.isoformat() of a UTC time.
NOTED_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:\d{2}|Z)")


@pass_context
def note(context: Any, text: str | None) -> Markup:
    """A history note ("queued; waits until 2026-11-21T01:00:00+00:00 (quiet hours)") with
    each time in it shown as `when` shows times; the rest as escaped text."""
    text, parts, end = text or "", [], 0
    for found in NOTED_TIME.finditer(text):
        try:
            at = datetime.fromisoformat(found.group())
        except ValueError:  # a date-like text that is no time: left as it is
            continue
        parts += [escape(text[end : found.start()]), when(context, at)]
        end = found.end()
    return Markup("").join([*parts, escape(text[end:])])


def as_json(value: Any) -> str:
    """A value as JSON, non-ASCII kept as is; strings bare."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def day_start(text: str, zone: tzinfo, days: int = 0) -> datetime | None:
    """`2026-11-20` (a day in the viewer's zone), `days` later, as the UTC time it starts;
    ValueError saying why for text that is no such day."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"“{text}” is not a day written YYYY-MM-DD") from None
    try:
        return datetime.combine(day + timedelta(days=days), time(0), zone).astimezone(UTC)
    except OverflowError:  # a day at the end of the calendar, or its start beyond it in UTC
        raise ValueError(f"{text} is too close to the calendar's first or last day; {EDGES}") from None


EDGES = "pick a day from 0001-01-02 to 9999-12-30"  # days that start in UTC's calendar, in any zone


FILTERS = {"when": when, "note": note, "as_json": as_json}
