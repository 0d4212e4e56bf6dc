"""Console users: a name, a password hash and a role."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from automator.schema import User
from automator.store import insert, table

USERS = table(User)


def add(session: Session, name: str, password_hash: str, role: str, now: datetime) -> bool:
    """Create a user; returns False when the name is taken."""
    statement = insert(session, USERS).on_conflict_do_nothing(index_elements=["name"])
    result = session.execute(
        statement.values(name=name, password_hash=password_hash, role=role, created_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def get(session: Session, name: str) -> User | None:
    return session.get(User, name)


def listing(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(USERS.c.name)).scalars())
