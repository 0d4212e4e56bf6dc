"""The message queue: dedupe-keyed inserts, status changes with history, and listings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from automator.schema import Coupon, Message, MessageHistory
from automator.store import insert, table

MESSAGES = table(Message)
HISTORY = table(MessageHistory)
COUPONS = table(Coupon)

STATUSES = ("queued", "held", "sending", "sent", "failed", "cancelled", "suppressed")
OPEN_STATUSES = ("queued", "held")


def enqueue(session: Session, values: dict[str, Any], reason: str) -> int | None:
    """Insert a message unless its (rule, contact, occurrence) exists; returns the new id or None."""
    statement = (
        insert(session, MESSAGES)
        .on_conflict_do_nothing(index_elements=["rule_id", "contact_id", "occurrence"])
        .returning(MESSAGES.c.id)
    )
    message_id = session.execute(statement, [values]).scalar()
    if message_id is not None:
        record(session, message_id, values["created_at"], values["status"], reason)
    return message_id


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
        _return_pool_coupon(session, message.id)


def _return_pool_coupon(session: Session, message_id: int) -> None:
    """A cancelled message never goes out, so its pool code goes back to the pool."""
    session.execute(
        update(COUPONS)
        .where(COUPONS.c.message_id == message_id, COUPONS.c.pool.is_not(None))
        .values(message_id=None, contact_id=None, rule_id=None, assigned_at=None)
    )


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


def due(session: Session, now: datetime, limit: int, lock: bool = False) -> list[Message]:
    """Queued messages whose send time has come, most important first.

    With `lock`, rows are locked FOR UPDATE SKIP LOCKED on PostgreSQL, so several daemons
    claim disjoint batches; SQLite ignores it (one daemon per SQLite file).
    """
    query = (
        select(Message)
        .where(MESSAGES.c.status == "queued", MESSAGES.c.send_at <= now)
        .order_by(MESSAGES.c.priority.desc(), MESSAGES.c.send_at, MESSAGES.c.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
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
    if where.email:
        query = query.where(MESSAGES.c.email == where.email.strip().lower())
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


def mark_sending(session: Session, claimed: list[Message], now: datetime, lease_until: datetime) -> None:
    """Claim messages for sending under a lease, in two statements for the whole batch."""
    if not claimed:
        return
    session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == bindparam("mid"))
        .values(status="sending", lease_until=lease_until, attempts=bindparam("new_attempts")),
        [{"mid": m.id, "new_attempts": m.attempts + 1} for m in claimed],
    )
    for message in claimed:
        set_committed_value(message, "status", "sending")
        set_committed_value(message, "lease_until", lease_until)
        set_committed_value(message, "attempts", message.attempts + 1)
    _record_many(session, claimed, now, "sending", "sending")


def mark_sent(session: Session, delivered: list[Message], now: datetime) -> None:
    session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id.in_([m.id for m in delivered]))
        .values(status="sent", sent_at=now, lease_until=None, last_error=None)
    )
    for message in delivered:
        for key, value in (("status", "sent"), ("sent_at", now), ("lease_until", None), ("last_error", None)):
            set_committed_value(message, key, value)
    session.execute(
        HISTORY.insert(),
        [
            {
                "message_id": m.id,
                "at": now,
                "status": "sent",
                "reason": f"sent to {m.email}",
                "actor": "automator",
            }
            for m in delivered
        ],
    )


def _record_many(session: Session, batch: list[Message], at: datetime, status: str, reason: str) -> None:
    session.execute(
        HISTORY.insert(),
        [
            {"message_id": m.id, "at": at, "status": status, "reason": reason, "actor": "automator"}
            for m in batch
        ],
    )
