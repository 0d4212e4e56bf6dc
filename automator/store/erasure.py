"""The right to erasure: a contact's personal data leaves the store, its counts stay.

Deleted: the contact's events, date attributes, tags and stage history, and the bodies of its
messages (on SQLite, a table's newest row is blanked instead, so that its id is never given
out again; see `_delete_keeping_the_newest_id`). Its row stays as a tombstone (`erased-<id>`,
no name, no attributes, no stage, so no rule ever targets it) because its messages stay: a
report still counts what each rule sent.
Those messages keep their rule, status and times, and lose their address, subject, error
text and occurrence (a cart id, an order id, a date: hashed). Their history and the audit
entries about them keep who did what and when, without the free-text reasons. Messages not
sent yet are cancelled; one being sent at that very moment (claimed by a dispatcher) goes
out, its email already built.

The address itself is kept only as a hashed suppression (`suppressions.hashed`), so that a
later import or API call for it makes a contact that is suppressed and never mailed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlmodel import Session

from automator.status import Status
from automator.store import audit, messages, suppressions, table
from automator.store.contacts import CONTACTS, DATES, STAGES, TAGS
from automator.store.events import EVENTS
from automator.store.messages import CONTENT, HISTORY, MESSAGES, OPEN_STATUSES, Change
from automator.tables import AuditEntry

AUDIT = table(AuditEntry)
ACTION = "erase contact"
ERASED_ROW = "erased"  # what is left of the newest row of a table on SQLite
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed: `contact_id` is None when no contact had the address (its
    hashed suppression is made all the same)."""

    contact_id: int | None
    events: int = 0
    messages: int = 0
    cancelled: int = 0


def tombstone(contact_id: int) -> str:
    """What an erased contact's and its messages' address becomes: no address at all."""
    return f"erased-{contact_id}"


def erase(session: Session, email: str, now: datetime, actor: str, reason: str) -> Erasure:
    """Erase the contact with this address (see the module's docstring), audited."""
    address = email.strip().lower()
    _suppress_hashed(session, address, now)
    contact_id = session.execute(select(CONTACTS.c.id).where(CONTACTS.c.email == address)).scalar()
    if contact_id is None:
        audit.record(session, now, actor, ACTION, reason)
        return Erasure(None)
    message_ids = list(
        session.execute(select(MESSAGES.c.id).where(MESSAGES.c.contact_id == contact_id)).scalars()
    )
    _strip_messages(session, contact_id, message_ids)
    cancelled = _cancel_open(session, message_ids, now, actor)  # its history line says why
    events = _delete_contact_rows(session, contact_id)
    _strip_contact(session, contact_id, now)
    audit.record(session, now, actor, ACTION, reason, contact_id=contact_id)
    return Erasure(contact_id, events, len(message_ids), cancelled)


def _suppress_hashed(session: Session, address: str, now: datetime) -> None:
    """Replace a suppression by the address (which is personal data) with a hashed one."""
    plain = session.execute(
        select(suppressions.SUPPRESSIONS.c.reason).where(suppressions.SUPPRESSIONS.c.email == address)
    ).scalar()
    note = f"was {plain}" if plain else ""
    suppressions.remove(session, address)
    suppressions.add(session, suppressions.hashed(address), suppressions.ERASED, note, now)


def _cancel_open(session: Session, message_ids: list[int], now: datetime, actor: str) -> int:
    changes = [Change(message_id, Status.CANCELLED, "contact erased") for message_id in message_ids]
    return len(messages.change_many(session, changes, now, OPEN_STATUSES, actor))


def _strip_messages(session: Session, contact_id: int, message_ids: list[int]) -> None:
    """Messages keep their rule, status and times; lose what could say who they were for."""
    if not message_ids:
        return
    session.execute(delete(CONTENT).where(CONTENT.c.message_id.in_(message_ids)))
    occurrences = session.execute(
        select(MESSAGES.c.id, MESSAGES.c.occurrence).where(MESSAGES.c.id.in_(message_ids))
    ).all()
    for message_id, occurrence in occurrences:
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == message_id)
            .values(
                email=tombstone(contact_id),
                subject="",
                last_error=None,
                event_id=None,
                occurrence="erased:" + hashlib.sha256(occurrence.encode()).hexdigest()[:32],
            )
        )
    session.execute(update(HISTORY).where(HISTORY.c.message_id.in_(message_ids)).values(reason=""))
    session.execute(
        update(AUDIT)
        .where(or_(AUDIT.c.contact_id == contact_id, AUDIT.c.message_id.in_(message_ids)))
        .values(reason="")
    )


def _delete_contact_rows(session: Session, contact_id: int) -> int:
    """Delete the contact's events, dates, tags and stage history; returns how many events."""
    events = session.execute(select(func.count()).where(EVENTS.c.contact_id == contact_id)).scalar_one()
    session.execute(delete(TAGS).where(TAGS.c.contact_id == contact_id))
    for rows, blank in (
        (EVENTS, {"type": ERASED_ROW, "properties": {}}),
        (DATES, {"name": ERASED_ROW, "value": EPOCH}),
        (STAGES, {"from_stage": None, "to_stage": ERASED_ROW, "cause": ERASED_ROW}),
    ):
        _delete_keeping_the_newest_id(session, rows, contact_id, blank)
    return int(events)


def _delete_keeping_the_newest_id(
    session: Session, rows: Any, contact_id: int, blank: dict[str, Any]
) -> None:
    """Delete the contact's rows of a table whose ids are the rules' watermarks.

    SQLite gives a new row the highest id + 1, so deleting the newest row would hand its id
    out again, at or below a rule's mark, and the row that gets it would never be looked at.
    On SQLite the table's newest row, when it is the contact's, is blanked instead (nothing
    personal left, nothing a rule matches); PostgreSQL's sequences never reuse an id."""
    if session.get_bind().dialect.name == "sqlite":
        newest = select(func.max(rows.c.id)).scalar_subquery()
        values = {**blank, "key": func.printf("erased:%d", rows.c.id)} if rows is EVENTS else blank
        session.execute(
            update(rows).where(rows.c.contact_id == contact_id, rows.c.id == newest).values(values)
        )
        session.execute(delete(rows).where(rows.c.contact_id == contact_id, rows.c.id != newest))
        return
    session.execute(delete(rows).where(rows.c.contact_id == contact_id))


def _strip_contact(session: Session, contact_id: int, now: datetime) -> None:
    """The tombstone: no address, name, locale, time zone, stage or attribute. Its address is
    suppressed too, so that nothing (a rule's `then` after a send in flight) can mail it."""
    session.execute(
        update(CONTACTS)
        .where(CONTACTS.c.id == contact_id)
        .values(
            email=tombstone(contact_id),
            first_name=None,
            last_name=None,
            locale=None,
            timezone=None,
            stage=None,
            stage_entered_at=None,
            attributes={},
            updated_at=now,
        )
    )
    suppressions.add(session, tombstone(contact_id), suppressions.ERASED, "", now)
