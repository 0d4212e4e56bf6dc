"""When a `schedule` trigger fires: cron expressions or fixed intervals, as pure arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from automator.model import ScheduleTrigger

EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday at midnight: `every: 7d` fires on Mondays


def cron(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A crontab line (`minute hour day month weekday`) in a time zone; ValueError if invalid."""
    return CronTrigger.from_crontab(expression, timezone=zone)


def last_fire(trigger: ScheduleTrigger, zone: ZoneInfo, now: datetime, earliest: datetime) -> datetime | None:
    """The latest time the schedule fired in `[earliest, now]`, or None."""
    if trigger.every is not None:
        periods = (now - EPOCH) // trigger.every
        latest = EPOCH + trigger.every * periods
        return latest if latest >= earliest else None
    assert trigger.schedule is not None
    schedule = cron(trigger.schedule, zone)
    fired: datetime | None = None
    moment = schedule.get_next_fire_time(None, earliest)
    for _ in range(10_000):  # bounded: a minute-by-minute cron over a long lateness window
        if moment is None or moment > now:
            break
        fired = moment
        moment = schedule.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return None if fired is None else fired.astimezone(UTC)
