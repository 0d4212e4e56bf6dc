"""The queries behind `automator report` and the console's Results page: what each rule's
messages led to, counted set-wise in a few grouped queries per rule, never message by message.

A message counts from when it was sent (failed ones from when they were queued). A goal
event within `goal.within` after a sent message converts that message; its revenue goes to
the latest message of the rule the contact got before it (last touch), so an order that
follows two steps of a journey is counted once. An unsubscribe is put down to the last
message the contact was sent before it, whatever its rule: the link carries no message id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, case, cast, exists, func, or_, select
from sqlmodel import Session

from automator.model import Rule
from automator.status import Status
from automator.store import table
from automator.store.sqltime import shifted
from automator.tables import Click, Event, Message, Suppression

MESSAGES = table(Message)
EVENTS = table(Event)
SUPPRESSIONS = table(Suppression)
CLICKS = table(Click)

Group = tuple[str, int, str | None]  # rule, step, variant


@dataclass
class Outcome:
    """What one rule's messages of one step and variant led to."""

    rule_id: str
    step: int
    variant: str | None
    sent: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    converted: int = 0
    clicks: int = 0
    revenue: dict[str, float] = field(default_factory=dict)  # per currency, as the events store it


@dataclass(frozen=True)
class Day:
    """Sends and conversions of one rule on one day (UTC), for the Results page's chart."""

    rule_id: str
    day: str  # YYYY-MM-DD
    sent: int
    converted: int


def outcomes(session: Session, rules: Iterable[Rule], since: datetime | None = None) -> list[Outcome]:
    """Per rule, step and variant, ordered so: the figures of `automator report`."""
    by_group: dict[Group, Outcome] = {}

    def row(group: Group) -> Outcome:
        return by_group.setdefault(group, Outcome(*group))

    for rule_id, step, variant, sent, bounced in session.execute(_counts(since)):
        found = row((rule_id, step, variant))
        found.sent, found.bounced = int(sent or 0), int(bounced or 0)
    for rule_id, step, variant, count in session.execute(_unsubscribed(since)):
        row((rule_id, step, variant)).unsubscribed = int(count)
    for rule_id, step, variant, count in session.execute(_clicks(since)):
        row((rule_id, step, variant)).clicks = int(count)
    for rule in rules:
        if rule.goal is None:
            continue
        for step, variant, count in session.execute(_converted(rule, since)):
            row((rule.id, step, variant)).converted = int(count)
        for step, variant, currency, total in session.execute(_revenue(rule, since)):
            if total is None:  # goal events without a `total` (a subscription) carry no revenue
                continue
            revenue = row((rule.id, step, variant)).revenue
            revenue[currency or "?"] = revenue.get(currency or "?", 0) + float(total or 0)
    return sorted(by_group.values(), key=lambda o: (o.rule_id, o.step, o.variant or ""))


def days(session: Session, rules: Iterable[Rule], since: datetime | None = None) -> list[Day]:
    """Sends and conversions per rule and day, by the day each message was sent."""
    sent: dict[tuple[str, str], int] = {}
    converted: dict[tuple[str, str], int] = {}
    day = func.date(MESSAGES.c.sent_at)
    query = (
        select(MESSAGES.c.rule_id, day, func.count()).where(*_sent(since)).group_by(MESSAGES.c.rule_id, day)
    )
    for rule_id, on, count in session.execute(query):
        sent[(rule_id, str(on)[:10])] = int(count)
    for rule in rules:
        if rule.goal is None:
            continue
        query = select(day, func.count()).where(*_sent(since), _rule(rule), _reached(rule)).group_by(day)
        for on, count in session.execute(query):
            converted[(rule.id, str(on)[:10])] = int(count)
    keys = sorted(set(sent) | set(converted))
    return [
        Day(rule_id, on, sent.get((rule_id, on), 0), converted.get((rule_id, on), 0)) for rule_id, on in keys
    ]


def _sent(since: datetime | None) -> list[ColumnElement[bool]]:
    where = [MESSAGES.c.status == Status.SENT]
    if since is not None:
        where.append(MESSAGES.c.sent_at >= since)
    return where


def _rule(rule: Rule) -> ColumnElement[bool]:
    return MESSAGES.c.rule_id == rule.id


GROUP = (MESSAGES.c.rule_id, MESSAGES.c.step, MESSAGES.c.variant)


def _counts(since: datetime | None) -> Any:
    sent = MESSAGES.c.status == Status.SENT
    failed = MESSAGES.c.status == Status.FAILED
    query = select(
        *GROUP,
        func.sum(case((sent, 1), else_=0)),
        func.sum(case((failed, 1), else_=0)),
    ).where(MESSAGES.c.status.in_([Status.SENT, Status.FAILED]))
    if since is not None:
        query = query.where(func.coalesce(MESSAGES.c.sent_at, MESSAGES.c.created_at) >= since)
    return query.group_by(*GROUP)


def _unsubscribed(since: datetime | None) -> Any:
    """Sent messages after which the address unsubscribed with no other message between."""
    later = MESSAGES.alias("later")
    unsubscribe = exists().where(
        SUPPRESSIONS.c.email == MESSAGES.c.email,
        SUPPRESSIONS.c.reason == "unsubscribed",
        SUPPRESSIONS.c.created_at >= MESSAGES.c.sent_at,
        ~exists()
        .where(
            later.c.contact_id == MESSAGES.c.contact_id,
            later.c.status == Status.SENT,
            later.c.sent_at > MESSAGES.c.sent_at,
            later.c.sent_at <= SUPPRESSIONS.c.created_at,
        )
        .correlate_except(later),
    )
    return select(*GROUP, func.count()).where(*_sent(since), unsubscribe).group_by(*GROUP)


def _clicks(since: datetime | None) -> Any:
    """Clicks on tracked links (`track_clicks`), every click counted."""
    query = select(*GROUP, func.count()).select_from(
        CLICKS.join(MESSAGES, MESSAGES.c.id == CLICKS.c.message_id)
    )
    return query.where(*_sent(since)).group_by(*GROUP)


def _goal_window(rule: Rule, message: Any, event: Any) -> list[ColumnElement[bool]]:
    assert rule.goal is not None
    return [
        event.c.contact_id == message.c.contact_id,
        event.c.type == rule.goal.event,
        event.c.at > message.c.sent_at,
        event.c.at <= shifted(message.c.sent_at, rule.goal.within),
    ]


def _reached(rule: Rule) -> ColumnElement[bool]:
    """The message's contact had the rule's goal within `goal.within` after it was sent."""
    return exists().where(*_goal_window(rule, MESSAGES, EVENTS))


def _converted(rule: Rule, since: datetime | None) -> Any:
    query = select(MESSAGES.c.step, MESSAGES.c.variant, func.count())
    query = query.where(*_sent(since), _rule(rule), _reached(rule))
    return query.group_by(MESSAGES.c.step, MESSAGES.c.variant)


def _revenue(rule: Rule, since: datetime | None) -> Any:
    """The goal events' `total` per currency, each put down to the rule's last message before it,
    an event reported twice once."""
    goal = EVENTS.alias("goal")
    between = MESSAGES.alias("between")
    last_touch = ~exists().where(
        between.c.rule_id == rule.id,
        between.c.contact_id == MESSAGES.c.contact_id,
        between.c.status == Status.SENT,
        between.c.sent_at > MESSAGES.c.sent_at,
        between.c.sent_at < goal.c.at,
    )
    # An order the shop reported twice (the same properties, another id a minute later)
    # counts once: the goal event counted is the first of its twins.
    twin = EVENTS.alias("twin")
    first_report = ~exists().where(
        twin.c.contact_id == goal.c.contact_id,
        twin.c.type == goal.c.type,
        or_(twin.c.at < goal.c.at, and_(twin.c.at == goal.c.at, twin.c.id < goal.c.id)),
        cast(twin.c.properties, Text) == cast(goal.c.properties, Text),
    )
    currency = goal.c.properties["currency"].as_string()
    query = (
        select(MESSAGES.c.step, MESSAGES.c.variant, currency, func.sum(goal.c.properties["total"].as_float()))
        .select_from(MESSAGES.join(goal, and_(*_goal_window(rule, MESSAGES, goal))))
        .where(*_sent(since), _rule(rule), last_touch, first_report)
    )
    return query.group_by(MESSAGES.c.step, MESSAGES.c.variant, currency)
