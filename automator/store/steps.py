"""A journey's later steps, set-wise: one statement per (rule, step) finds every contact whose
step before was sent (or skipped) the step's delay ago.

Step k of a rule is due `delay` after its step k-1 went: the statement reads the rule's
messages of step k-1 by `sent_at` through the (rule_id, step, sent_at) index, so that a
tick reads only the slice whose step k came due since the last one. A step follows only a
`sent` or `skipped` step: a cancelled, suppressed or failed step ends the journey. Left out
are contacts no longer in the rule's stages, those that reached the goal or had a
cancelling event since the journey began, and journeys messaged for step k already (their
occurrence `<base>#k`, see `automator.store.journeys.step_occurrence`).

A step's `when` is not a filter: each of its conditions is a column, and a candidate whose
conditions do not all hold carries why (`Candidate.skip`), to be recorded as skipped, so that
the journey goes on from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    bindparam,
    case,
    exists,
    func,
    literal,
    select,
    type_coerce,
)
from sqlmodel import Session

from automator.conditions import compile_condition
from automator.model import AnyCondition, Condition, DateTrigger, EventTrigger, HistoryCondition, Rule, Step
from automator.status import Status
from automator.store.candidates import (
    CONTACTS,
    EVENTS,
    MESSAGES,
    Candidate,
    Watermark,
    _addressee,
    _cancelled,
    _suppressed,
    addressee,
)
from automator.store.sqltime import shifted
from automator.store.statements import per_row
from automator.tables import UTCDateTime

# A message is recorded as sent a moment after its `sent_at` (the dispatcher's commit comes
# after the time it writes): each lookup reaches this far back before its mark, and the
# dedupe test drops what was seen already.
MARGIN = timedelta(minutes=10)
FOLLOWED = (Status.SENT, Status.SKIPPED)  # the statuses a journey goes on from
SENT_FROM = bindparam("sent_from", type_=UTCDateTime())
SENT_UNTIL = bindparam("sent_until", type_=UTCDateTime())
_statements: dict[tuple[str, int, str], Select[Any]] = {}


def step_hash(rule: Rule, step: int) -> str:
    """Changes when what the step's lookup looks at changes, which restarts its mark."""
    shape = repr((rule.trigger.model_dump_json(), rule.stages, rule.step(step).model_dump_json()))
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


def batches(
    session: Session, rule: Rule, step: int, now: datetime, mark: Watermark, size: int = 64
) -> Iterator[list[Candidate]]:
    """Step `step`'s due, new, not yet messaged journeys, `size` at a time. Due: the step
    before went between `now - delay - max lateness` and `now - delay`; new: it went after
    the mark's `until` less the step's delay (and MARGIN)."""
    delay = rule.step(step).delay
    earliest = max(now - rule.lateness, mark.until - MARGIN)
    values = {"now": now, "sent_from": earliest - delay, "sent_until": now - delay}
    for rows in session.execute(statement(rule, step), values).partitions(size):
        yield [step_candidate(step, rule.step(step), row) for row in rows]


def step_candidate(step: int, spec: Step, row: Any) -> Candidate:
    """A row of step `step`'s lookup (`spec` is that step of the rule) as a candidate, with
    why it is skipped (if it is)."""
    conditions = spec.when
    return Candidate(
        addressee(row),
        row.occurrence,
        row.occurred_at,
        row.event_id,
        bool(row.suppressed),
        row.properties,
        step=step,
        due_at=row.before_sent_at + spec.delay,
        skip=_skip_reason(step, conditions, [row._mapping[f"holds_{n}"] for n in range(len(conditions))]),
    )


def with_first_step_skips(
    session: Session, rule: Rule, chunk: list[Candidate], now: datetime
) -> list[Candidate]:
    """A chunk of step-1 candidates, those for whom step 1's own `when` does not hold now
    marked to be skipped: one statement per chunk, the conditions one column each."""
    conditions = rule.step(1).when
    if not conditions or not chunk:
        return chunk
    contact = CONTACTS.alias("c")
    event = EVENTS.alias("e") if isinstance(rule.trigger, EventTrigger) else None
    query = select(contact.c.id.label("contact_id"), *_holds(conditions, contact, event))
    if event is not None:
        ids = {candidate.event_id for candidate in chunk if candidate.event_id is not None}
        query = query.add_columns(event.c.id.label("event_id"))
        query = query.select_from(contact.join(event, event.c.contact_id == contact.c.id))
        query = query.where(event.c.id.in_(ids))
    else:
        query = query.add_columns(literal(None).label("event_id"))
        query = query.where(contact.c.id.in_({candidate.contact_id for candidate in chunk}))
    verdicts = {
        (row.contact_id, row.event_id): _skip_reason(
            1, conditions, [row._mapping[f"holds_{n}"] for n in range(len(conditions))]
        )
        for row in session.execute(query, {"now": now})
    }
    return [
        replace(
            candidate,
            skip=verdicts.get((candidate.contact_id, candidate.event_id if event is not None else None)),
        )
        for candidate in chunk
    ]


def statement(rule: Rule, step: int) -> Select[Any]:
    """Step `step`'s lookup (it binds `now`, `sent_from` and `sent_until`), built once per
    rule and step."""
    key = (rule.id, step, rule.model_dump_json())
    statement = _statements.get(key)
    if statement is None:
        if len(_statements) >= 256:
            _statements.clear()
        statement = _statements[key] = _step_query(rule, step)
    return statement


def _step_query(rule: Rule, step: int) -> Select[Any]:
    before, contact = MESSAGES.alias("before"), CONTACTS.alias("c")
    event = EVENTS.alias("e") if isinstance(rule.trigger, EventTrigger) else None
    base = _base_occurrence(before.c.occurrence, step - 1)
    query = select(
        before.c.contact_id,
        contact.c.email,
        base.label("occurrence"),
        before.c.occurred_at,
        before.c.event_id,
        before.c.sent_at.label("before_sent_at"),
        _suppressed(contact),
        *_addressee(contact, event),
        *_holds(rule.step(step).when, contact, event),
    ).join(contact, contact.c.id == before.c.contact_id)
    if event is not None:
        query = query.outerjoin(event, event.c.id == before.c.event_id)
    messaged = MESSAGES.alias("messaged")
    return query.where(
        before.c.rule_id == rule.id,
        before.c.step == step - 1,
        before.c.sent_at >= SENT_FROM,
        before.c.sent_at <= SENT_UNTIL,
        per_row(before.c.status).in_(FOLLOWED),  # through the (rule, step, sent_at) index only
        contact.c.stage.in_(rule.stages),
        ~_cancelled(rule, contact.c.id, _journey_began(rule, before.c.occurred_at)),
        ~exists().where(
            messaged.c.rule_id == rule.id,
            messaged.c.contact_id == contact.c.id,
            messaged.c.occurrence == base.concat(f"#{step}"),
        ),
    )


def _base_occurrence(occurrence: Any, step: int) -> Any:
    """The trigger's occurrence of a message of `step`: its own without the `#N` suffix."""
    if step == 1:
        return type_coerce(occurrence, String)
    return type_coerce(func.substr(occurrence, 1, func.length(occurrence) - len(f"#{step}")), String)


def _journey_began(rule: Rule, occurred_at: Any) -> Any:
    """From when a cancelling event or the goal ends the journey: the trigger event, or for
    a date trigger when step 1 was due (as the re-checks before sending count it)."""
    if isinstance(rule.trigger, DateTrigger) and rule.offset:
        return shifted(occurred_at, rule.offset)
    return occurred_at


def _holds(conditions: list[AnyCondition], contact: Any, event: Any) -> list[ColumnElement[Any]]:
    """Each condition as a column, 1 when it holds (0 or NULL when not)."""
    return [
        case((compile_condition(cond, contact, event), 1), else_=0).label(f"holds_{n}")
        for n, cond in enumerate(conditions)
    ]


def _skip_reason(step: int, conditions: list[AnyCondition], holds: list[Any]) -> str | None:
    """Why the step is skipped (the first of its conditions that does not hold), or None."""
    for number, (cond, held) in enumerate(zip(conditions, holds, strict=True), start=1):
        if not held:
            return f"skipped: step {step}'s condition {number} ({_shown(cond)}) does not hold"
    return None


def _shown(cond: AnyCondition) -> str:
    if isinstance(cond, HistoryCondition):
        within = f" within {cond.within}" if cond.within else ""
        return f"history: {cond.event}{within} count {cond.op} {cond.count}"
    assert isinstance(cond, Condition)
    return f"{cond.field} {cond.op} {cond.value!r}"
