"""Suppressed addresses: they get nothing from any rule."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel import Session

from automator.store import insert, table
from automator.tables import Suppression

SUPPRESSIONS = table(Suppression)
REASONS = ("unsubscribed", "bounced", "complained", "blocked")


def add(session: Session, email: str, reason: str, note: str, now: datetime) -> bool:
    """Suppress an address; returns False when it already was."""
    statement = insert(session, SUPPRESSIONS).on_conflict_do_nothing(index_elements=["email"])
    values = {"email": email, "reason": reason, "note": note, "created_at": now}
    # What the insert returns says whether it inserted: psycopg's rowcount does not.
    return session.execute(statement.values(**values).returning(SUPPRESSIONS.c.email)).first() is not None


def add_many(session: Session, addresses: list[tuple[str, str]], reason: str, now: datetime) -> None:
    """Suppress several addresses (address, note) for one reason, in one statement; one
    already suppressed keeps what it had."""
    if addresses:
        statement = insert(session, SUPPRESSIONS).on_conflict_do_nothing(index_elements=["email"])
        rows = [
            {"email": email, "reason": reason, "note": note, "created_at": now} for email, note in addresses
        ]
        session.execute(statement, rows)


def remove(session: Session, email: str) -> bool:
    result = session.execute(delete(SUPPRESSIONS).where(SUPPRESSIONS.c.email == email))
    return bool(getattr(result, "rowcount", 0))


def get(session: Session, email: str) -> Suppression | None:
    return session.get(Suppression, email)


def listing(session: Session) -> list[Suppression]:
    return list(session.execute(select(Suppression).order_by(SUPPRESSIONS.c.created_at.desc())).scalars())


def among(session: Session, emails: set[str]) -> set[str]:
    """Which of these addresses are suppressed."""
    if not emails:
        return set()
    return set(
        session.execute(select(SUPPRESSIONS.c.email).where(SUPPRESSIONS.c.email.in_(emails))).scalars()
    )
