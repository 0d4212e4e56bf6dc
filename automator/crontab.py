"""Crontab lines as crontab reads them, for APScheduler: the rule files' `schedule:` is
checked with this when a rule loads and fired with it when a tick runs."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab's numbers: 0 (and 7) is Sunday


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
