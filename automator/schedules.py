"""When a `schedule` trigger fires: cron expressions or fixed intervals, as pure arithmetic,
in the project's time zone or (`timezone: contact`) in each contact's own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from automator.crontab import cron as cron
from automator.model import ScheduleTrigger
from automator.timestamps import zone_named

EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday at midnight: `every: 7d` fires on Mondays


@dataclass(frozen=True)
class Firing:
    """A local schedule's latest firing in some zones: the contacts whose `timezone` is
    one of `zones`, and, for the project zone's firing (`unzoned`), those with none."""

    fired: datetime
    zones: tuple[str, ...]
    unzoned: bool


def firings(
    trigger: ScheduleTrigger, zones: Iterable[str], project: ZoneInfo, now: datetime, earliest: datetime
) -> list[Firing]:
    """Contacts' zones grouped by the schedule's latest firing in each, in `[earliest, now]`;
    zones that did not fire then are left out. A zone this system does not know counts as
    the project's, as a contact without one does."""
    by_fire: dict[datetime, list[str]] = {}
    own = last_fire(trigger, project, now, earliest)
    for name in sorted(set(zones)):
        zone = zone_named(name)
        fired = own if zone is None else last_fire(trigger, zone, now, earliest)
        if fired is not None:
            by_fire.setdefault(fired, []).append(name)
    if own is not None:
        by_fire.setdefault(own, [])
    return [Firing(fired, tuple(names), fired == own) for fired, names in sorted(by_fire.items())]


def last_fire(trigger: ScheduleTrigger, zone: ZoneInfo, now: datetime, earliest: datetime) -> datetime | None:
    """The latest time the schedule fired in `[earliest, now]`, or None.

    When the clocks go back, an hour of local times comes twice. As cron does, a schedule
    fires in it once, the first time: a firing in the repeated hour (`fold`) is not one."""
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
        if moment.astimezone(zone).fold:
            # APScheduler would give this repeated time again and again: go on from the end
            # of the repeated hour.
            moment = schedule.get_next_fire_time(None, _after_repeated_hour(moment, zone))
            continue
        fired = moment
        moment = schedule.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return None if fired is None else fired.astimezone(UTC)


def _after_repeated_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    """The first whole minute after `moment` whose local time comes only once."""
    step = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while step.astimezone(zone).fold:  # at most the shift of the clocks: an hour, or two
        step += timedelta(minutes=1)
    return step
