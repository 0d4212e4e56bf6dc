"""The message queue: dedupe-keyed inserts, status changes with history, and listings."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, literal, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from automator.schema import Message, MessageContent, MessageHistory, UTCDateTime
from automator.store import coupons, insert, table
from automator.store.contacts import CONTACTS, Recipient

MESSAGES = table(Message)
HISTORY = table(MessageHistory)
CONTENT = table(MessageContent)

STATUSES = ("queued", "held", "sending", "sent", "failed", "cancelled", "suppressed")
OPEN_STATUSES = ("queued", "held")


def enqueue(
    session: Session, values: dict[str, Any], reason: str, text: str = "", html: str = ""
) -> int | None:
    """Insert a message and its content unless its (rule, contact, occurrence) exists;
    returns the new id or None."""
    statement = (
        insert(session, MESSAGES)
        .on_conflict_do_nothing(index_elements=["rule_id", "contact_id", "occurrence"])
        .returning(MESSAGES.c.id)
    )
    message_id = session.execute(statement, [values]).scalar()
    if message_id is not None:
        set_content(session, message_id, text, html)
        record(session, message_id, values["created_at"], values["status"], reason)
    return message_id


@dataclass(frozen=True, slots=True)
class Content:
    """A message's rendered bodies."""

    text: str
    html: str


def content(session: Session, message_id: int) -> Content:
    """A message's bodies (empty before it is rendered)."""
    row = session.execute(
        select(CONTENT.c.text_body, CONTENT.c.html_body).where(CONTENT.c.message_id == message_id)
    ).first()
    return Content(row.text_body, row.html_body) if row else Content("", "")


def set_content(session: Session, message_id: int, text: str, html: str) -> None:
    """Store a message's bodies, replacing what it had."""
    statement = insert(session, CONTENT).values(message_id=message_id, text_body=text, html_body=html)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["message_id"],
            set_={"text_body": statement.excluded.text_body, "html_body": statement.excluded.html_body},
        )
    )


def record(
    session: Session,
    message_id: int,
    at: datetime,
    status: str,
    reason: str,
    actor: str = "automator",
) -> None:
    """Append one line to a message's history."""
    session.execute(
        HISTORY.insert().values(message_id=message_id, at=at, status=status, reason=reason, actor=actor)
    )


def change(
    session: Session,
    message: Message,
    status: str,
    at: datetime,
    reason: str,
    actor: str = "automator",
    **values: Any,
) -> None:
    """Set a message's status (and other columns) and record why."""
    session.execute(update(MESSAGES).where(MESSAGES.c.id == message.id).values(status=status, **values))
    for key, value in {"status": status, **values}.items():
        # Already written by the UPDATE above: keep the ORM from writing it a second time.
        set_committed_value(message, key, value)
    assert message.id is not None
    record(session, message.id, at, status, reason, actor)
    if status == "cancelled":
        coupons.return_to_pool(session, [message.id])  # a cancelled message never goes out


def reschedule(session: Session, message: Message, send_at: datetime) -> None:
    """Move a message's send time without a history line (for repeated, identical waits)."""
    session.execute(update(MESSAGES).where(MESSAGES.c.id == message.id).values(send_at=send_at))
    message.send_at = send_at


def get(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def history(session: Session, message_id: int) -> list[MessageHistory]:
    return list(
        session.execute(
            select(MessageHistory)
            .where(HISTORY.c.message_id == message_id)
            .order_by(HISTORY.c.at, HISTORY.c.id)
        ).scalars()
    )


@dataclass(slots=True)
class Due:
    """A due message as the dispatcher reads it, with its contact: the columns its re-checks,
    the email and the outcome need, as plain values (no ORM objects to build and track)."""

    id: int
    rule_id: str
    contact_id: int
    email: str
    occurred_at: datetime
    event_id: int | None
    due_at: datetime
    expires_at: datetime
    skip_policies: bool
    attempts: int
    subject: str
    text_body: str
    html_body: str
    message_id: str
    contact: Recipient


BODIES = ("text_body", "html_body")
DUE_COLUMNS = [
    func.coalesce(CONTENT.c[column.name], "").label(column.name)
    if column.name in BODIES
    else MESSAGES.c[column.name]
    for column in fields(Due)
    if column.name != "contact"
]
RECIPIENT_COLUMNS = [CONTACTS.c[column.name] for column in fields(Recipient) if column.name != "id"]


def due(session: Session, now: datetime, limit: int, lock: bool = False) -> list[Due]:
    """Queued messages whose send time has come, most important first.

    With `lock`, rows are locked FOR UPDATE SKIP LOCKED on PostgreSQL, so several daemons
    claim disjoint batches; SQLite ignores it (one daemon per SQLite file).
    """
    ids = _due_ids(session, now, limit, lock)
    if not ids:
        return []
    query = (
        select(*DUE_COLUMNS, *RECIPIENT_COLUMNS)
        .select_from(
            MESSAGES.outerjoin(CONTENT, CONTENT.c.message_id == MESSAGES.c.id).outerjoin(
                CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id
            )
        )
        .where(MESSAGES.c.id.in_(ids))
        .order_by(MESSAGES.c.priority.desc(), MESSAGES.c.send_at, MESSAGES.c.id)
    )
    return [_due(row) for row in session.execute(query)]


def _due_ids(session: Session, now: datetime, limit: int, lock: bool) -> list[int]:
    """The ids of the `limit` most important due messages, read from the (status,
    priority, send_at, id) index one priority at a time: the cost of a batch follows its
    size and the number of priorities, never the number of messages due. (One query
    ordered by priority, then send time, would sort every due message at each batch.)"""
    ids: list[int] = []
    level: int | None = None
    for _ in range(10_000):  # bounded: each pass moves to a lower priority
        highest = select(func.max(MESSAGES.c.priority)).where(MESSAGES.c.status == "queued")
        if level is not None:
            highest = highest.where(MESSAGES.c.priority < level)
        level = session.execute(highest).scalar()
        if level is None:
            break
        chosen = (
            select(MESSAGES.c.id)
            .where(MESSAGES.c.status == "queued", MESSAGES.c.priority == level, MESSAGES.c.send_at <= now)
            .order_by(MESSAGES.c.send_at, MESSAGES.c.id)
            .limit(limit - len(ids))
        )
        if lock:
            chosen = chosen.with_for_update(skip_locked=True)
        ids += session.execute(chosen).scalars()
        if len(ids) >= limit:
            break
    return ids


def _due(row: Row[Any]) -> Due:
    """A Due from a row of its columns followed by its contact's."""
    width = len(DUE_COLUMNS)
    values = (*row[:width], Recipient(row.contact_id, *row[width:]))
    return Due(*values)


def sending_among(session: Session, message_ids: set[int]) -> list[Message]:
    """Those of these messages still in `sending` (their outcome not recorded yet)."""
    if not message_ids:
        return []
    query = select(Message).where(MESSAGES.c.id.in_(message_ids), MESSAGES.c.status == "sending")
    return list(session.execute(query).scalars())


def expired_leases(session: Session, now: datetime) -> list[Message]:
    """Messages left in `sending` by a dispatcher that stopped before finishing."""
    return list(
        session.execute(
            select(Message).where(MESSAGES.c.status == "sending", MESSAGES.c.lease_until < now)
        ).scalars()
    )


@dataclass
class QueueFilter:
    status: str | None = None
    rule: str | None = None
    email: str | None = None
    limit: int = 100


def listing(session: Session, where: QueueFilter) -> list[Message]:
    """Messages matching a filter, newest first."""
    query = select(Message)
    if where.status:
        query = query.where(MESSAGES.c.status == where.status)
    if where.rule:
        query = query.where(MESSAGES.c.rule_id == where.rule)
    if where.email:  # through the contact's index (see console._to_address_starting)
        contact = select(CONTACTS.c.id).where(CONTACTS.c.email == where.email.strip().lower())
        query = query.where(MESSAGES.c.contact_id.in_(contact))
    query = query.order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc()).limit(where.limit)
    return list(session.execute(query).scalars())


def waiting(session: Session, rule_id: str, now: datetime) -> int:
    """Queued messages of a rule whose send time is still ahead."""
    return (
        session.execute(
            select(func.count()).where(
                MESSAGES.c.rule_id == rule_id,
                MESSAGES.c.status == "queued",
                MESSAGES.c.send_at > now,
            )
        ).scalar()
        or 0
    )


def for_contact(session: Session, contact_id: int) -> list[Message]:
    return list(
        session.execute(
            select(Message)
            .where(MESSAGES.c.contact_id == contact_id)
            .order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc())
        ).scalars()
    )


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(MESSAGES.c.status, func.count()).group_by(MESSAGES.c.status))
    found: dict[str, int] = {status: count for status, count in rows}
    return {status: found[status] for status in STATUSES if status in found}


def oldest_waiting(session: Session) -> Message | None:
    """The queued or held message that has waited longest past its send time."""
    return (
        session.execute(
            select(Message).where(MESSAGES.c.status.in_(OPEN_STATUSES)).order_by(MESSAGES.c.send_at).limit(1)
        )
        .scalars()
        .first()
    )


def sent_times(
    session: Session, contact_ids: set[int], since: datetime, now: datetime
) -> dict[int, list[datetime]]:
    """Per contact, when their messages were sent after `since` (the frequency-cap window);
    a message being sent right now counts as sent now."""
    found: dict[int, list[datetime]] = {}
    if contact_ids:
        rows = session.execute(
            select(MESSAGES.c.contact_id, MESSAGES.c.sent_at).where(
                MESSAGES.c.contact_id.in_(contact_ids),
                or_(
                    and_(MESSAGES.c.status == "sent", MESSAGES.c.sent_at > since),
                    MESSAGES.c.status == "sending",
                ),
            )
        )
        for contact_id, sent_at in rows:
            found.setdefault(contact_id, []).append(sent_at or now)
    return found


def mark_sending(session: Session, claimed: list[Due], now: datetime, lease_until: datetime) -> None:
    """Claim messages for sending under a lease (one more attempt each), with a history line;
    two statements for the whole batch."""
    if not claimed:
        return
    ids = [message.id for message in claimed]
    session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(ids))
        .values(status="sending", lease_until=lease_until, attempts=MESSAGES.c.attempts + 1)
    )
    for message in claimed:
        message.attempts += 1
    _record_many(session, ids, now, "sending", literal("sending"))


def mark_sent(session: Session, delivered: list[Due], now: datetime) -> None:
    """Record messages as sent, with a history line naming the address; two statements."""
    if not delivered:
        return
    ids = [message.id for message in delivered]
    session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(ids))
        .values(status="sent", sent_at=now, lease_until=None, last_error=None)
    )
    _record_many(session, ids, now, "sent", literal("sent to ") + MESSAGES.c.email)


def _record_many(
    session: Session, message_ids: list[int], at: datetime, status: str, reason: ColumnElement[str]
) -> None:
    """One history line per message; `reason` may use the message's columns."""
    lines = select(
        MESSAGES.c.id,
        literal(at, UTCDateTime()),
        literal(status),
        reason,
        literal("automator"),
    ).where(MESSAGES.c.id.in_(message_ids))
    session.execute(HISTORY.insert().from_select(["message_id", "at", "status", "reason", "actor"], lines))
