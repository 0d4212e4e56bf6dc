"""What a simulated run sent, read back from its disposable copy for `simulate`'s plan."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from automator.status import Status
from automator.store.messages import MESSAGES

Sent = tuple[str, str, str, datetime]  # rule, email, occurrence, sent at


def sent_between(session: Session, start: datetime, end: datetime) -> list[Sent]:
    """Every message sent in [start, end): its rule, address, occurrence and send time."""
    query = select(MESSAGES.c.rule_id, MESSAGES.c.email, MESSAGES.c.occurrence, MESSAGES.c.sent_at).where(
        MESSAGES.c.status == Status.SENT, MESSAGES.c.sent_at >= start, MESSAGES.c.sent_at < end
    )
    return [(rule, email, occurrence, at) for rule, email, occurrence, at in session.execute(query)]
