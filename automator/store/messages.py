"""The message queue: dedupe-keyed inserts, status changes with history, and listings."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, literal, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from automator.errors import StatusChanged
from automator.status import Status, allowed
from automator.store import coupons, insert, table
from automator.store.contacts import CONTACTS, Recipient
from automator.tables import Message, MessageContent, MessageHistory, UTCDateTime

MESSAGES = table(Message)
HISTORY = table(MessageHistory)
CONTENT = table(MessageContent)

STATUSES = tuple(Status)
OPEN_STATUSES = (Status.QUEUED, Status.HELD)


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
    *,
    expected: Collection[str] | None = None,
    **values: Any,
) -> None:
    """Set a message's status (and other columns) and record why, if it is still in one of
    the `expected` statuses (by default, the status it was read in).

    A compare-and-set: of a dispatcher and a person changing one message at the same
    moment, the one who comes second gets StatusChanged, saying what happened first,
    instead of undoing it (a cancel that lands on a message being sent, a claim of a
    message just cancelled)."""
    before = (message.status,) if expected is None else tuple(expected)
    if not all(allowed(old, status) for old in before):
        raise ValueError(f"a message cannot go from {' or '.join(before)} to {status}")
    assert message.id is not None
    result = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == message.id, MESSAGES.c.status.in_(before))
        .values(status=status, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StatusChanged(message.id, *last_change(session, message.id))
    for key, value in {"status": status, **values}.items():
        # Already written by the UPDATE above: keep the ORM from writing it a second time.
        set_committed_value(message, key, value)
    record(session, message.id, at, status, reason, actor)
    if status == Status.CANCELLED:
        coupons.return_to_pool(session, [message.id])  # a cancelled message never goes out


def last_change(session: Session, message_id: int) -> tuple[str, datetime | None]:
    """A message's status now, and when it entered it (from its history)."""
    current = session.execute(select(MESSAGES.c.status).where(MESSAGES.c.id == message_id)).scalar_one()
    at = session.execute(
        select(func.max(HISTORY.c.at)).where(HISTORY.c.message_id == message_id, HISTORY.c.status == current)
    ).scalar()
    return current, at


def reschedule(session: Session, message: Message, send_at: datetime) -> None:
    """Move a message's send time without a history line (for repeated, identical waits)."""
    session.execute(update(MESSAGES).where(MESSAGES.c.id == message.id).values(send_at=send_at))
    message.send_at = send_at


def get(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def known(session: Session, message_id: int) -> Message:
    """A message known to exist (one being dispatched), as it is stored now."""
    message = session.get(Message, message_id)
    assert message is not None, f"message {message_id} vanished"
    return message


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


def requeue_expired(session: Session, wall: datetime, reason: str) -> int:
    """Put back in the queue the messages whose lease ran out before `wall` (the real time,
    whatever time a tick acts as): their dispatcher stopped without recording an outcome."""
    return _requeue(session, and_(MESSAGES.c.lease_until < wall), wall, reason)


def requeue_claimed(session: Session, ids: Collection[int], owner: str, at: datetime, reason: str) -> int:
    """Put back in the queue those of these messages `owner` still holds in `sending`."""
    if not ids:
        return 0
    return _requeue(session, and_(MESSAGES.c.id.in_(ids), MESSAGES.c.claimed_by == owner), at, reason)


def requeue_daemons(session: Session, at: datetime, reason: str) -> int:
    """Put back every message a daemon left in `sending`, lease or not: for the one daemon
    a SQLite file allows, at start-up, when no other daemon can be sending. Claims of
    `automator tick` processes, which may be running, wait for their leases."""
    return _requeue(
        session, or_(MESSAGES.c.claimed_by.is_(None), MESSAGES.c.claimed_by.startswith(DAEMON)), at, reason
    )


DAEMON = "daemon:"  # how the claims of `automator run` begin (see Dispatcher.owner)


def _requeue(session: Session, which: ColumnElement[bool], at: datetime, reason: str) -> int:
    ids = list(
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.status == Status.SENDING, which)
            .values(status=Status.QUEUED, lease_until=None, claimed_by=None)
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    if ids:
        _record_many(session, ids, at, Status.QUEUED, literal(reason))
    return len(ids)


def extend_leases(session: Session, ids: Collection[int], owner: str, until: datetime) -> None:
    """Keep `owner`'s claims alive while it is still sending them."""
    if ids:
        session.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.id.in_(ids), MESSAGES.c.claimed_by == owner, MESSAGES.c.status == Status.SENDING
            )
            .values(lease_until=until)
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


def claim(session: Session, due: list[Due], now: datetime, owner: str, lease_until: datetime) -> list[Due]:
    """Mark messages `sending` under `owner`'s lease (one more attempt each), with a history
    line; returns the ones it took.

    Only a message still `queued` is taken, in the UPDATE itself: another dispatcher (a
    tick beside the daemon) or a person may have changed some since they were read, and
    only what this claim changed may be sent."""
    if not due:
        return []
    taken = set(
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_([message.id for message in due]), MESSAGES.c.status == Status.QUEUED)
            .values(
                status=Status.SENDING,
                lease_until=lease_until,
                claimed_by=owner,
                attempts=MESSAGES.c.attempts + 1,
            )
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    claimed = [message for message in due if message.id in taken]
    for message in claimed:
        message.attempts += 1
    _record_many(session, list(taken), now, Status.SENDING, literal("sending"))
    return claimed


def mark_sent(session: Session, delivered: list[Due], now: datetime) -> list[int]:
    """Record messages as sent, with a history line naming the address; returns the ids
    recorded. One whose lease ran out and was put back in the queue meanwhile is recorded
    too (it did go out; sending it again would be the duplicate); one that a person or
    another dispatcher has ended since is left as it is."""
    if not delivered:
        return []
    ids = list(
        session.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.id.in_([message.id for message in delivered]),
                MESSAGES.c.status.in_((Status.SENDING, Status.QUEUED)),
            )
            .values(status=Status.SENT, sent_at=now, lease_until=None, last_error=None)
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    _record_many(session, ids, now, Status.SENT, literal("sent to ") + MESSAGES.c.email)
    return ids


def _record_many(
    session: Session, message_ids: list[int], at: datetime, status: str, reason: ColumnElement[str]
) -> None:
    """One history line per message; `reason` may use the message's columns."""
    if not message_ids:
        return
    lines = select(
        MESSAGES.c.id,
        literal(at, UTCDateTime()),
        literal(status),
        reason,
        literal("automator"),
    ).where(MESSAGES.c.id.in_(message_ids))
    session.execute(HISTORY.insert().from_select(["message_id", "at", "status", "reason", "actor"], lines))
