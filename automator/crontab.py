"""Crontab lines as crontab reads them, for APScheduler: the rule files' `schedule:` is
checked with this when a rule loads and fired with it when a tick runs."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's numbers: 0 (and 7) is Sunday
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")  # fmt: skip
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: 29 in leap years


@functools.lru_cache(maxsize=1024)
def cron(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A crontab line (`minute hour day month weekday`) in a time zone; ValueError if invalid.

    APScheduler 3 counts weekdays from Monday = 0, crontab from Sunday = 0: a weekday given
    by number is named before APScheduler reads it, so that `0 9 * * 1` is Monday 09:00."""
    fields = expression.split()
    if len(fields) == 5:
        fields[4] = ",".join(_weekday_names(part) for part in fields[4].split(","))
    return CronTrigger.from_crontab(" ".join(fields), timezone=zone)


def _weekday_names(part: str) -> str:
    """One comma-separated part of crontab's weekday field, with numbers as names: `1-5`
    is `mon,tue,wed,thu,fri`, `*/2` is `sun,tue,thu,sat`; names and `*` stay as they are."""
    span, _, step = part.partition("/")
    if not any(char.isdigit() for char in span) and (span != "*" or not step):
        return part
    if any(char.isalpha() for char in part):
        raise ValueError(f"weekday '{part}': give numbers or names, not both")
    first, _, last = span.partition("-")
    low = 0 if span == "*" else int(first)
    high = int(last) if last else (6 if step else low)  # `1/2`: from Monday on, every other day
    if not 0 <= low <= high <= 7:
        raise ValueError(f"weekday '{part}': crontab weekdays are 0-7 (0 and 7 are Sunday)")
    numbers = range(low, high + 1, int(step) if step else 1)
    return ",".join(dict.fromkeys(WEEKDAYS[number % 7] for number in numbers))


def never_fires(expression: str) -> str | None:
    """Why a valid crontab line never fires (`April has 30 days`), or None when it does or
    cannot be told: each of its days of the month is past the end of each of its months
    (`0 9 31 4 *`). APScheduler fires a line only on a day when both its day of the month
    and its weekday match (not either, as crontab does), so a weekday never saves such a
    line. Worked out from the fields, not by asking APScheduler for the next firing: that
    searches every year up to 9999 first, most of a second for each rule loaded."""
    fields = expression.split()
    days = _values(fields[2], 31, ())
    months = _values(fields[3], 12, MONTHS)
    if not days or not months:
        return None  # `last`: APScheduler's own word, which always fires
    longest = max(MONTH_DAYS[month - 1] for month in months)
    if min(days) <= longest:
        return None
    names = [MONTH_NAMES[month - 1] for month in sorted(months)]
    named = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    verb = "has" if len(names) == 1 else "have"
    return f"{named} {verb} {'at most ' if 2 in months else ''}{longest} days"


def _values(field: str, highest: int, names: tuple[str, ...]) -> set[int]:
    """The numbers a crontab field of days (1-31) or months (1-12, `jan`…) stands for; an
    empty set for what it does not spell with numbers, names, `*`, ranges and steps."""
    values: set[int] = set()
    for part in field.lower().split(","):
        span, _, step = part.partition("/")
        first_text, dash, last_text = span.partition("-")
        first = 1 if span == "*" else _number(first_text, names)
        last = (
            highest
            if span == "*" or (step and not dash)
            else _number(last_text if dash else first_text, names)
        )
        if first is None or last is None or not (step or "1").isdigit():
            return set()
        values.update(range(first, last + 1, int(step or 1)))
    return values


def _number(text: str, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    return names.index(text) + 1 if text in names else None
