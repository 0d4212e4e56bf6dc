"""Console users (a name, a password hash, a role and the version of their sessions) and
the failed logins the console counts to slow down password guessing."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlmodel import Session

from automator.store import insert, table
from automator.tables import LoginFailure, User

USERS = table(User)
FAILURES = table(LoginFailure)


def add(session: Session, name: str, password_hash: str, role: str, now: datetime) -> bool:
    """Create a user; returns False when the name is taken."""
    statement = insert(session, USERS).on_conflict_do_nothing(index_elements=["name"])
    values = {"name": name, "password_hash": password_hash, "role": role, "created_at": now}
    statement = statement.values(**values, session_version=secrets.randbelow(2**31)).returning(USERS.c.name)
    # What the insert returns says whether it inserted: psycopg's rowcount does not.
    return session.execute(statement).first() is not None


def get(session: Session, name: str) -> User | None:
    return session.get(User, name)


def listing(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(USERS.c.name)).scalars())


def remove(session: Session, name: str) -> bool:
    """Delete a user (their sessions end with them); False when there is none of that name."""
    return _changed(session.execute(delete(USERS).where(USERS.c.name == name)))


def set_password(session: Session, name: str, password_hash: str) -> bool:
    """A new password; the user's sessions end. False when there is no user of that name."""
    return _change(session, name, password_hash=password_hash)


def set_role(session: Session, name: str, role: str) -> bool:
    """A new role; the user's sessions end. False when there is no user of that name."""
    return _change(session, name, role=role)


def end_sessions(session: Session, name: str) -> bool:
    """End every session of the user (logging out): their cookies name an older version."""
    return _change(session, name)


def _change(session: Session, name: str, **values: str) -> bool:
    statement = update(USERS).where(USERS.c.name == name)
    return _changed(session.execute(statement.values(session_version=USERS.c.session_version + 1, **values)))


def _changed(result: object) -> bool:
    return bool(getattr(result, "rowcount", 0))


# Names are cut to what the table keeps: anyone can type a long one into the login form.
NAME_KEPT = 100
ADDRESS_KEPT = 64


def record_failure(session: Session, name: str, address: str, at: datetime) -> None:
    session.execute(FAILURES.insert().values(name=name[:NAME_KEPT], address=address[:ADDRESS_KEPT], at=at))


def failures_of_name(session: Session, name: str, since: datetime) -> list[datetime]:
    """When logins as `name` failed since `since`, oldest first."""
    return _times(session, FAILURES.c.name == name[:NAME_KEPT], since)


def failures_from(session: Session, address: str, since: datetime) -> list[datetime]:
    """When logins from `address` failed since `since`, oldest first."""
    return _times(session, FAILURES.c.address == address[:ADDRESS_KEPT], since)


def _times(session: Session, which: ColumnElement[bool], since: datetime) -> list[datetime]:
    query = select(FAILURES.c.at).where(which, FAILURES.c.at >= since).order_by(FAILURES.c.at)
    return list(session.execute(query).scalars())


def forget_failures(session: Session, name: str, address: str) -> None:
    """After a successful login: that name's failures from that address (the user's own
    typos). Other names' failures from the address still count against it."""
    which = and_(FAILURES.c.name == name[:NAME_KEPT], FAILURES.c.address == address[:ADDRESS_KEPT])
    session.execute(delete(FAILURES).where(which))


def forget_failures_before(session: Session, before: datetime) -> None:
    session.execute(delete(FAILURES).where(FAILURES.c.at < before))
