"""Daemon heartbeats: who is running, and when the last tick happened.

A daemon killed outright (SIGKILL, a crash, the machine) leaves its heartbeat saying
`running`. On PostgreSQL a daemon holds a lock of its own while it runs (`alive`), which
the server lets go with its connection however the process ends: `gone` tells the dead
from the living. On SQLite the single-daemon lock file tells (`daemon_lock.SingleDaemonLock`)."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from automator.store import Store, claims, locks, table
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


def alive(store: Store, daemon: str) -> AbstractContextManager[claims.OwnerLock]:
    """Held while the daemon runs: its lock on PostgreSQL (nothing on SQLite), which the
    daemon keeps at each heartbeat (`OwnerLock.keep`)."""
    return claims.owning(store, _owner(daemon))


def gone(session: Session, daemons: Collection[str]) -> set[str]:
    """Those of these daemons whose lock nobody holds: their process has ended (PostgreSQL).
    Each lock is tried for this transaction only, so a daemon starting meanwhile is not kept
    from taking it."""
    return {
        daemon
        for daemon in daemons
        if session.execute(select(func.pg_try_advisory_xact_lock(key(daemon)))).scalar()
    }


def key(daemon: str) -> int:
    """The key of the daemon's lock."""
    return locks.owner(_owner(daemon))


def _owner(daemon: str) -> str:
    return f"daemon-process:{daemon}"
