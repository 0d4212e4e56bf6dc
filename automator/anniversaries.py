"""Yearly dates as pure arithmetic: a date attribute's month and day in a given year, and
which month-days a window of time can touch.

A date is stored as a UTC instant (a date alone: midnight in the contact's zone). Its
anniversary in a year is the same month, day and local time in the contact's zone; 29
February falls on 28 February in other years. A local date is within a day of its UTC date
in every zone, which bounds the month-days a stored value can have for a given window.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

ONE_DAY = timedelta(days=1)
# A stored value's UTC month-day is within a day of its local one, and an instant's local
# date within a day of its UTC date: two days either side of a window cover both.
MARGIN = 2 * ONE_DAY
LEAP_DAY = 229


def anniversary(value: datetime, zone: ZoneInfo, year: int) -> datetime:
    """`value`'s month, day and local time in `zone`, in `year` (UTC)."""
    local = value.astimezone(zone)
    day = min(local.day, calendar.monthrange(year, local.month)[1])
    moment = datetime(year, local.month, day, local.hour, local.minute, local.second, local.microsecond)
    return moment.replace(tzinfo=zone).astimezone(UTC)


def local_year(moment: datetime, zone: ZoneInfo) -> int:
    """The year `moment` falls in, in `zone`: a yearly occurrence is named by it."""
    return moment.astimezone(zone).year


def years(earliest: datetime, latest: datetime) -> range:
    """Every year an instant in `[earliest, latest]` can fall in, in some zone."""
    return range((earliest - ONE_DAY).year, (latest + ONE_DAY).year + 1)


def month_day(day: date) -> int:
    """17 May → 517, as `automator.tables.month_day` computes it in SQL."""
    return day.month * 100 + day.day


def month_days(earliest: datetime, latest: datetime) -> list[int]:
    """The UTC month-days a stored value may have when its anniversary falls in
    `[earliest, latest]` in its zone: a slightly wider set, to be narrowed exactly by
    `anniversary`. When the window touches 28 February of a common year, the leap-day
    values (whose anniversary falls then) are in it too, with 1 March beside them."""
    found = {month_day(day) for day in _days(earliest - MARGIN, latest + MARGIN)}
    if any(
        not calendar.isleap(day.year) and (day.month, day.day) == (2, 28)
        for day in _days(earliest - ONE_DAY, latest + ONE_DAY)
    ):
        found |= {LEAP_DAY, 301}
    return sorted(found)


def _days(earliest: datetime, latest: datetime) -> Iterator[date]:
    """Each UTC date from `earliest`'s to `latest`'s, at most a year's worth."""
    day, last = earliest.astimezone(UTC).date(), latest.astimezone(UTC).date()
    for _ in range(367):
        if day > last:
            return
        yield day
        day += ONE_DAY
