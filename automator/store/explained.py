"""A rule's lookups asked for one contact, for `automator explain`: the same statements a
tick runs (`store.candidates`, `conditions`), restricted to that contact's rows, so that an
explanation says what the tick does rather than what a second implementation thinks."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session

from automator.conditions import compile_condition
from automator.model import AnyCondition, Rule
from automator.store import steps, table
from automator.store.candidates import Candidate, Watermark, _candidate, _lookups
from automator.store.windows import NO_CHANGES, fresh_until
from automator.tables import Contact, Event

CONTACTS = table(Contact)
EVENTS = table(Event)


def due_occurrences(
    session: Session, rule: Rule, contact_id: int, now: datetime, zone: ZoneInfo
) -> list[Candidate]:
    """The contact's due, not yet messaged occurrences of the rule's trigger, as a tick at
    `now` with no watermark yet would find them: the whole max-lateness window is read."""
    mark = Watermark(until=fresh_until(rule, now), seq=0, changes=NO_CHANGES)
    found = []
    for statement, values, place in _lookups(session, rule, now, mark, zone):
        rows = statement.subquery("found")
        for row in session.execute(select(rows).where(rows.c.contact_id == contact_id), values):
            candidate = _candidate(row, place)
            if candidate is not None:
                found.append(candidate)
    return found


def due_step(session: Session, rule: Rule, step: int, contact_id: int, now: datetime) -> list[Candidate]:
    """The contact's journeys of the rule whose step `step` a tick at `now` with no
    watermark yet would find due (the whole max-lateness window is read), through the
    tick's own step lookup (`store.steps`)."""
    spec = rule.step(step)
    values = {"now": now, "sent_from": now - rule.lateness - spec.delay, "sent_until": now - spec.delay}
    rows = steps.statement(rule, step).subquery("found")
    found = session.execute(select(rows).where(rows.c.contact_id == contact_id), values)
    return [steps.step_candidate(step, spec, row) for row in found]


def holds(session: Session, cond: AnyCondition, contact_id: int, event_id: int | None, now: datetime) -> bool:
    """Whether one compiled condition holds for the contact (and the trigger's event)."""
    contact = CONTACTS.alias("c")
    event = EVENTS.alias("e") if event_id is not None else None
    query = (
        select(compile_condition(cond, contact, event)).select_from(contact).where(contact.c.id == contact_id)
    )
    if event is not None:
        query = query.join(event, event.c.contact_id == contact.c.id).where(event.c.id == event_id)
    return bool(session.execute(query, {"now": now}).scalar())
