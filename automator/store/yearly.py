"""Yearly date triggers (`trigger: {date: contact.birthday, yearly: true}`), set-wise.

A stored date keeps its own year; what comes due is its month and day in the year
concerned (`automator.anniversaries`). The lookup reads the date attribute through its
(name, month-day) index for the few month-days the due window can touch, a slightly wider
set than the window, and each row's anniversary is then computed in Python, in the
contact's zone, and kept when it lies in the window.

The window is small (the rule's maximum lateness), so every tick looks at all of it,
without the watermark's three windows (`store.windows`): an anniversary already
messaged is left out by its occurrence, `<attribute>@<year>`, and a contact who changed
since is found again simply because the window is read whole. A window that spans a new
year is looked up once per year, each with its own occurrence.

The goal and cancel_if count from the anniversary (`within` before it, else from when
the trigger fires): the latest event of each such type is read with the row, and the
comparison is made in Python once the anniversary is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, String, bindparam, exists, func, select

from automator import anniversaries, conditions
from automator.model import DateTrigger, Rule
from automator.store import table
from automator.tables import Event, Message, month_day
from automator.timestamps import zone_named

MESSAGES = table(Message)
EVENTS = table(Event)
OCCURRENCE = bindparam("occurrence", type_=String())
MONTH_DAYS = bindparam("month_days", type_=Integer(), expanding=True)


def where(rule: Rule, date: Any, contact_id: Any) -> list[ColumnElement[bool]]:
    """The date attribute's rows whose month-day may be due, not messaged for this year."""
    return [
        month_day(date.c.value).in_(MONTH_DAYS),
        ~exists().where(
            MESSAGES.c.rule_id == rule.id,
            MESSAGES.c.contact_id == contact_id,  # tied to the contact: see candidates._event_query
            MESSAGES.c.occurrence == OCCURRENCE,
        ),
    ]


def columns(rule: Rule, contact_id: Any) -> list[Any]:
    """For each stopping event type (`stops`), the contact's latest such event by now."""
    other = EVENTS.alias("stop_event")
    return [
        select(func.max(other.c.at))
        .where(other.c.contact_id == contact_id, other.c.type == kind, other.c.at <= conditions.NOW)
        .scalar_subquery()
        .label(f"stop_{number}")
        for number, (kind, _) in enumerate(stops(rule))
    ]


def stops(rule: Rule) -> list[tuple[str, timedelta]]:
    """Each event type that stops the message, with where its window starts relative to the
    anniversary: `within` before it, else when the trigger fires (the rule's offset)."""
    trigger = rule.trigger
    assert isinstance(trigger, DateTrigger)
    found = [
        (cancel.event, -cancel.within if cancel.within else trigger.offset) for cancel in trigger.cancel_if
    ]
    if rule.stopping_goal is not None:
        found.append((rule.stopping_goal.event, trigger.offset))
    return found


@dataclass(frozen=True)
class Year:
    """One year's lookup of a yearly rule: the anniversaries in that year that are due at
    `now` and not older than the rule's maximum lateness. `zone` is the project's, for
    contacts without a (known) zone of their own."""

    rule: Rule
    year: int
    now: datetime
    zone: ZoneInfo

    @property
    def earliest(self) -> datetime:
        return self.latest - self.rule.lateness

    @property
    def latest(self) -> datetime:
        return self.now - self.rule.offset

    @property
    def occurrence(self) -> str:
        trigger = self.rule.trigger
        assert isinstance(trigger, DateTrigger)
        return f"{trigger.attribute}@{self.year}"

    def values(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "occurrence": self.occurrence,
            "month_days": anniversaries.month_days(self.earliest, self.latest),
        }

    def place(self, row: Any) -> tuple[str, datetime] | None:
        """The row's occurrence and its anniversary, when that is due and not stopped."""
        zone = zone_named(row.timezone) or self.zone
        moment = anniversaries.anniversary(row.occurred_at, zone, self.year)
        if not self.earliest <= moment <= self.latest:
            return None
        for number, (_, since) in enumerate(stops(self.rule)):
            latest = getattr(row, f"stop_{number}")
            if latest is not None and latest >= moment + since:
                return None
        return self.occurrence, moment


def each_year(rule: Rule, now: datetime, zone: ZoneInfo) -> list[Year]:
    """The lookups of a tick: one per year the due window touches (two around a new year)."""
    latest = now - rule.offset
    return [Year(rule, year, now, zone) for year in anniversaries.years(latest - rule.lateness, latest)]
