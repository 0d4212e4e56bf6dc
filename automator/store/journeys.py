"""Where a contact is in each journey (a rule with `steps`), read from the contact's messages
of the rule in one query; and the journeys a chunk's contacts started, for a rule's `limit`.

A contact's place in a journey is its newest journey's furthest step: "step 2 of 3 sent
2026-12-03 09:00Z; step 3 due about 2026-12-06 09:00Z", "ended at step 2 of 3: goal
reached: …", "finished".
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlmodel import Session

from automator.model import Rule
from automator.status import Status
from automator.store import table
from automator.store.contacts import stage_at
from automator.tables import Contact, Event, Message, MessageHistory
from automator.timestamps import shown_at

CONTACTS = table(Contact)
EVENTS = table(Event)
MESSAGES = table(Message)
HISTORY = table(MessageHistory)
WENT = (Status.SENT, Status.SKIPPED)  # a journey goes on from these
ENDED = (Status.CANCELLED, Status.SUPPRESSED, Status.FAILED)  # and ends at these


def started(
    session: Session, rule_id: str, contact_ids: Collection[int], since: datetime, statuses: Collection[str]
) -> dict[int, list[datetime]]:
    """Per contact, the due times of the rule's journeys (its step-1 messages) in `statuses`
    due after `since`: through the dedupe key's (rule, contact) prefix."""
    rows = session.execute(
        select(MESSAGES.c.contact_id, MESSAGES.c.due_at).where(
            MESSAGES.c.rule_id == rule_id,
            MESSAGES.c.contact_id.in_(list(contact_ids)),
            MESSAGES.c.step == 1,
            MESSAGES.c.status.in_(list(statuses)),
            MESSAGES.c.due_at > since,
        )
    )
    found: dict[int, list[datetime]] = {}
    for contact_id, due_at in rows:
        found.setdefault(contact_id, []).append(due_at)
    return found


def in_span(begun: Collection[datetime], due: datetime, per: timedelta) -> list[datetime]:
    """The journeys of `begun` that a limit of `per` counts against one due at `due`: those
    due in the span `due - per < t <= due` (`candidates._under_limit` writes it in SQL)."""
    return [moment for moment in begun if due - per < moment <= due]


@dataclass(frozen=True)
class Position:
    """A contact's place in one journey: the rule, its furthest step and what it says."""

    rule_id: str
    step: int
    steps: int
    status: str
    message_id: int
    text: str

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.text}"


def positions(
    session: Session,
    rules: list[Rule],
    contact_id: int,
    rule_id: str | None = None,
    zone: tzinfo | None = None,
    now: datetime | None = None,
) -> list[Position]:
    """The contact's place in each journey it has begun (or in `rule_id`'s alone), in the
    order of `rules`; times in `zone` (the console's viewer's), else in UTC ("…Z"). With
    `now` (explain's --now), as it was then: the messages queued by then, each in the
    status its history gives at that moment."""
    journeys = {rule.id: rule for rule in rules if rule.steps and rule_id in (None, rule.id)}
    if not journeys:
        return []
    lines = select(HISTORY.c.message_id).where(HISTORY.c.message_id == MESSAGES.c.id)
    if now is not None:
        lines = lines.where(HISTORY.c.at <= now)
    last = lines.order_by(HISTORY.c.id.desc()).limit(1)
    status: ColumnElement[Any] = MESSAGES.c.status
    if now is not None:
        status = func.coalesce(last.with_only_columns(HISTORY.c.status).scalar_subquery(), MESSAGES.c.status)
    query = select(
        MESSAGES.c.id,
        MESSAGES.c.rule_id,
        MESSAGES.c.step,
        status.label("status"),
        MESSAGES.c.occurrence,
        MESSAGES.c.occurred_at,
        MESSAGES.c.send_at,
        MESSAGES.c.sent_at,
        last.with_only_columns(HISTORY.c.reason).scalar_subquery().label("reason"),
    ).where(MESSAGES.c.contact_id == contact_id, MESSAGES.c.rule_id.in_(list(journeys)))
    if now is not None:
        query = query.where(MESSAGES.c.created_at <= now)
    newest: dict[str, Any] = {}
    for row in session.execute(query.order_by(MESSAGES.c.id)).all():  # the newest journey's furthest step
        if now is not None and row.sent_at is not None and row.sent_at > now:
            row = row._replace(sent_at=None)  # it went later
        current = newest.get(row.rule_id)
        same_journey = current is not None and _base(current) == _base(row)
        if current is None or not same_journey or row.step >= current.step:
            newest[row.rule_id] = row
    return [
        _position(rule, furthest, stopped(session, rule, contact_id, furthest, zone, now), zone)
        for rule in journeys.values()
        if (furthest := newest.get(rule.id)) is not None
    ]


def stopped(
    session: Session, rule: Rule, contact_id: int, row: Any, zone: tzinfo | None, now: datetime | None = None
) -> str | None:
    """Why a journey whose furthest step went out will go no further, though it has steps
    left: the contact reached the goal or had a cancel_if event since the journey began,
    or left the rule's stages (the next step is then never queued). None while it goes on.
    With `now`, as it was then: the events by then, the stage then."""
    if row.status not in WENT or row.step >= len(rule.journey) or row.sent_at is None:
        return None
    kinds = rule.cancel_events
    if kinds:
        query = select(EVENTS.c.type, EVENTS.c.at).where(
            EVENTS.c.contact_id == contact_id, EVENTS.c.type.in_(kinds), EVENTS.c.at > row.occurred_at
        )
        if now is not None:
            query = query.where(EVENTS.c.at <= now)
        found = session.execute(query.order_by(EVENTS.c.at).limit(1)).first()
        if found is not None:
            goal = rule.stopping_goal
            what = "goal reached" if goal is not None and found.type == goal.event else "cancelled"
            return f"{what}: {found.type} at {shown_at(found.at, zone)}"
    contact = session.get(Contact, contact_id)
    assert contact is not None
    stage = contact.stage if now is None else stage_at(session, contact, now)
    if stage not in rule.stages:
        return f"left the rule's stages ({'now' if now is None else 'then'} in {stage})"
    return None


def step_occurrence(occurrence: str, step: int) -> str:
    """A message's occurrence, which its dedupe key holds: the trigger's occurrence for a
    journey's first step (and a rule without steps), with `#N` for step N after it
    (`store.steps` reads it back in SQL)."""
    return occurrence if step == 1 else f"{occurrence}#{step}"


def _base(row: Any) -> str:
    """The journey a message belongs to: its occurrence without the `#N` of its step."""
    return str(row.occurrence).removesuffix(f"#{row.step}") if row.step > 1 else str(row.occurrence)


def _position(rule: Rule, row: Any, stopped: str | None, zone: tzinfo | None) -> Position:
    text = describe(rule, row, stopped, zone)
    return Position(rule.id, row.step, len(rule.journey), row.status, row.id, text)


def describe(rule: Rule, row: Any, stopped: str | None = None, zone: tzinfo | None = None) -> str:
    """What a journey's furthest message says of it, as a person reads it; `stopped`: why
    it goes no further though steps are left."""
    step, steps, status = row.step, len(rule.journey), row.status
    of = f"step {step} of {steps}"
    if status == Status.SKIPPED and row.sent_at is None:  # the limit kept the journey from starting
        return f"ended at {of}: {row.reason or status}"
    if status in WENT:
        went = f"{of} {status} {shown_at(row.sent_at, zone)}"
        if step == steps:
            return f"finished ({went})"
        if stopped:
            return f"ended after {went}: {stopped}"
        due = row.sent_at + rule.step(step + 1).delay if row.sent_at else None
        return f"{went}; step {step + 1} due about {shown_at(due, zone)}"
    if status in ENDED:
        reason = str(row.reason or status).split("; the journey ends")[0]
        return f"ended at {of}: {reason}"
    if status == Status.QUEUED:
        return f"{of} queued for {shown_at(row.send_at, zone)}"
    return f"{of} {status}"
