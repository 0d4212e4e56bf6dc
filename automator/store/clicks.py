"""Clicks on tracked links (`track_clicks`): recorded one row per click, counted per message."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from automator.store import insert, table
from automator.store.messages import MESSAGES
from automator.tables import Click

CLICKS = table(Click)


def record(session: Session, message_id: int, at: datetime) -> bool:
    """Count a click on message `message_id`; False when no such message exists (erased
    databases, a token from another project signed with the same secret)."""
    if session.execute(select(MESSAGES.c.id).where(MESSAGES.c.id == message_id)).first() is None:
        return False
    session.execute(insert(session, CLICKS).values(message_id=message_id, at=at))
    return True


def counts(session: Session, message_ids: Collection[int]) -> dict[int, int]:
    """How many times each message's links were clicked (messages never clicked are left out)."""
    query = (
        select(CLICKS.c.message_id, func.count())
        .where(CLICKS.c.message_id.in_(list(message_ids)))
        .group_by(CLICKS.c.message_id)
    )
    return {message_id: int(count) for message_id, count in session.execute(query)}
