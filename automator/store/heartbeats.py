"""Daemon heartbeats: who is running, and when the last tick happened."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from automator.store import table
from automator.tables import Heartbeat

HEARTBEATS = table(Heartbeat)


def beat(session: Session, daemon: str, state: str, now: datetime, tick_at: datetime | None) -> None:
    row = session.get(Heartbeat, daemon)
    if row is None:
        row = Heartbeat(daemon=daemon, state=state, started_at=now, seen_at=now)
        session.add(row)
    row.state, row.seen_at = ("stopped" if state == "stopped" else "running"), now
    if tick_at is not None:
        row.last_tick_at = tick_at
    session.flush()


def latest(session: Session) -> list[Heartbeat]:
    return list(session.execute(select(Heartbeat).order_by(HEARTBEATS.c.seen_at.desc())).scalars())
