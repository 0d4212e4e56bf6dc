"""Turn a chunk of due trigger occurrences into queued, rendered messages, set-wise.

One transaction per chunk: insert the messages under their dedupe key (conflicts are
skipped), take or generate their coupons, render them, and write bodies and history — a
handful of statements per chunk instead of several per message. Coupons are allocated in
the same transaction that records the dedupe key, so a re-run never issues a second code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update
from sqlmodel import Session

from automator import emails
from automator.coupons import generate_code
from automator.dispatch import planned_send_at
from automator.errors import AutomatorError, TemplateError
from automator.model import CouponSpec, EventTrigger, Rule
from automator.schema import Contact, Coupon, Event, Message, MessageHistory
from automator.store import insert, table
from automator.store.candidates import Candidate

if TYPE_CHECKING:
    from automator.engine import Engine

CONTACTS = table(Contact)
EVENTS = table(Event)
MESSAGES = table(Message)
HISTORY = table(MessageHistory)
COUPONS = table(Coupon)


@dataclass
class Draft:
    """A message being queued: its row values, then its coupon and rendered content."""

    values: dict[str, Any]
    contact: Any
    id: int | None = None
    coupon: Any = None
    outcome: str = "queued"
    reason: str = "queued"


def enqueue_chunk(
    engine: Engine, session: Session, rule: Rule, chunk: list[Candidate], now: datetime
) -> list[str]:
    """Queue a chunk of occurrences; returns one outcome per message actually inserted."""
    contacts = {
        row.id: row
        for row in session.execute(select(CONTACTS).where(CONTACTS.c.id.in_({c.contact_id for c in chunk})))
    }
    drafts = [_draft(engine, rule, candidate, contacts[candidate.contact_id], now) for candidate in chunk]
    drafts = _insert(session, drafts)
    sendable = [draft for draft in drafts if draft.values["status"] == "queued"]
    if rule.send.coupon is not None:
        attach_coupons(session, rule, rule.send.coupon, sendable, now)
    _render(engine, session, rule, sendable)
    _write(session, drafts, now)
    return [draft.outcome for draft in drafts]


def _draft(engine: Engine, rule: Rule, candidate: Candidate, contact: Any, now: datetime) -> Draft:
    from automator.engine import trigger_offset

    due = candidate.occurred_at + trigger_offset(rule)
    send_at = planned_send_at(engine.settings, contact, max(due, now))
    values = {
        "rule_id": rule.id,
        "contact_id": contact.id,
        "email": contact.email,
        "occurrence": candidate.occurrence,
        "occurred_at": candidate.occurred_at,
        "event_id": candidate.event_id,
        "status": "suppressed" if candidate.suppressed else "queued",
        "priority": engine.settings.priorities.get(rule.id, rule.priority),
        "due_at": due,
        "send_at": send_at,
        "expires_at": send_at + rule.lateness,
        "locale": contact.locale or "en",
        "message_id": emails.new_message_id(engine.settings.sender),
        "created_at": now,
    }
    draft = Draft(values, contact)
    if candidate.suppressed:
        draft.outcome, draft.reason = "suppressed", "address is suppressed"
    elif send_at > now:
        draft.reason = f"queued; waits until {send_at.isoformat()} (quiet hours)"
    return draft


def _insert(session: Session, drafts: list[Draft]) -> list[Draft]:
    """Insert all drafts; those whose dedupe key exists already (another tick or daemon
    queued them first) are dropped."""
    unique: dict[tuple[int, str], Draft] = {}
    for draft in drafts:  # two events of one order in the same chunk: one message
        unique.setdefault((draft.values["contact_id"], draft.values["occurrence"]), draft)
    drafts = list(unique.values())
    statement = (
        insert(session, MESSAGES)
        .on_conflict_do_nothing(index_elements=["rule_id", "contact_id", "occurrence"])
        .returning(MESSAGES.c.id, MESSAGES.c.contact_id, MESSAGES.c.occurrence)
    )
    ids = {
        (row.contact_id, row.occurrence): row.id
        for row in session.execute(statement, [draft.values for draft in drafts])
    }
    for draft in drafts:
        draft.id = ids.get((draft.values["contact_id"], draft.values["occurrence"]))
    return [draft for draft in drafts if draft.id is not None]


def attach_coupons(
    session: Session, rule: Rule, spec: CouponSpec, drafts: list[Draft], now: datetime
) -> None:
    waiting = drafts
    if spec.pool:
        waiting = _take_from_pool(session, rule, spec.pool, drafts, now)
        if spec.when_empty == "hold":
            for draft in waiting:
                draft.values["status"], draft.values["hold_kind"] = "held", "coupon"
                draft.outcome = "held: coupon pool empty"
                draft.reason = f"coupon pool '{spec.pool}' is empty"
            return
    _generate(session, rule, spec, waiting, now)


def _take_from_pool(
    session: Session, rule: Rule, pool: str, drafts: list[Draft], now: datetime
) -> list[Draft]:
    """Assign free codes of the pool in order; returns the drafts left without one.

    Rows are locked FOR UPDATE SKIP LOCKED on PostgreSQL, so two daemons never take the
    same code; the UPDATE re-checks that the code is still free.
    """
    free = session.execute(
        select(COUPONS)
        .where(COUPONS.c.pool == pool, COUPONS.c.message_id.is_(None))
        .order_by(COUPONS.c.id)
        .limit(len(drafts))
        .with_for_update(skip_locked=True)
    ).all()
    for draft, row in zip(drafts, free, strict=False):
        taken = session.execute(
            update(COUPONS)
            .where(COUPONS.c.id == row.id, COUPONS.c.message_id.is_(None))
            .values(
                message_id=draft.id, contact_id=draft.values["contact_id"], rule_id=rule.id, assigned_at=now
            )
        )
        if getattr(taken, "rowcount", 0):
            draft.coupon = row
    return [draft for draft in drafts if draft.coupon is None]


def _generate(session: Session, rule: Rule, spec: CouponSpec, drafts: list[Draft], now: datetime) -> None:
    """A fresh unique code per draft; a code that collides is drawn again."""
    statement = insert(session, COUPONS).on_conflict_do_nothing(index_elements=["code"]).returning(COUPONS)
    pending = drafts
    for _ in range(5):
        if not pending:
            return
        rows = [
            {
                "code": generate_code(spec.prefix),
                "percent_off": spec.percent_off,
                "expires_at": now + spec.expires_in,
                "contact_id": d.values["contact_id"],
                "rule_id": rule.id,
                "message_id": d.id,
                "created_at": now,
                "assigned_at": now,
            }
            for d in pending
        ]
        created = {row.message_id: row for row in session.execute(statement, rows)}
        for draft in pending:
            draft.coupon = created.get(draft.id)
        pending = [draft for draft in pending if draft.coupon is None]
    raise AutomatorError("could not generate unique coupon codes in 5 tries")


def _render(engine: Engine, session: Session, rule: Rule, drafts: list[Draft]) -> None:
    properties: dict[int, dict[str, Any]] = {}
    event_ids = {d.values["event_id"] for d in drafts if d.values["event_id"] is not None}
    if isinstance(rule.trigger, EventTrigger) and event_ids:
        properties = dict(
            session.execute(select(EVENTS.c.id, EVENTS.c.properties).where(EVENTS.c.id.in_(event_ids))).all()
        )
    for draft in drafts:
        if draft.values["status"] != "queued":
            continue
        values = draft.values
        event = properties.get(values["event_id"], {}) if isinstance(rule.trigger, EventTrigger) else None
        try:
            rendered = engine.render_with(
                rule, draft.contact, draft.coupon, values["occurred_at"], values["send_at"], event
            )
        except TemplateError as exc:
            values["status"], values["hold_kind"] = "held", "render"
            draft.outcome, draft.reason = "held: template error", f"template error: {exc}"
            continue
        values.update(subject=rendered.subject, text_body=rendered.text, html_body=rendered.html)


def _write(session: Session, drafts: list[Draft], now: datetime) -> None:
    """Bodies and statuses in one executemany, one history line per message."""
    if not drafts:
        return
    session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == bindparam("mid"))
        .values(
            status=bindparam("new_status"),
            hold_kind=bindparam("new_hold_kind"),
            subject=bindparam("new_subject"),
            text_body=bindparam("new_text"),
            html_body=bindparam("new_html"),
        ),
        [
            {
                "mid": d.id,
                "new_status": d.values["status"],
                "new_hold_kind": d.values.get("hold_kind"),
                "new_subject": d.values.get("subject", ""),
                "new_text": d.values.get("text_body", ""),
                "new_html": d.values.get("html_body", ""),
            }
            for d in drafts
        ],
    )
    session.execute(
        HISTORY.insert(),
        [
            {
                "message_id": d.id,
                "at": now,
                "status": d.values["status"],
                "reason": d.reason,
                "actor": "automator",
            }
            for d in drafts
        ],
    )
