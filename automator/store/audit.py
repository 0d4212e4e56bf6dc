"""The audit log: every action a person takes, with who, when and why."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from automator.store import table
from automator.tables import AuditEntry

AUDIT = table(AuditEntry)


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    reason: str,
    message_id: int | None = None,
    contact_id: int | None = None,
) -> None:
    session.execute(
        AUDIT.insert().values(
            at=at, actor=actor, action=action, reason=reason, message_id=message_id, contact_id=contact_id
        )
    )


def for_message(session: Session, message_id: int) -> list[AuditEntry]:
    query = select(AuditEntry).where(AUDIT.c.message_id == message_id).order_by(AUDIT.c.at, AUDIT.c.id)
    return list(session.execute(query).scalars())


def for_contact(session: Session, contact_id: int) -> list[AuditEntry]:
    query = (
        select(AuditEntry)
        .where(AUDIT.c.contact_id == contact_id)
        .order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc())
    )
    return list(session.execute(query).scalars())


def for_action(session: Session, action: str) -> list[AuditEntry]:
    """Entries of one kind (`login failed`, `remove user`…), oldest first."""
    query = select(AuditEntry).where(AUDIT.c.action == action).order_by(AUDIT.c.at, AUDIT.c.id)
    return list(session.execute(query).scalars())
