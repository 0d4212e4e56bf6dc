"""API keys: made, listed, revoked, and found by the hash of the key a request carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlmodel import Session

from automator.store import insert, table
from automator.tables import ApiKey

KEYS = table(ApiKey)


@dataclass(frozen=True, slots=True)
class Caller:
    """What a request's key lets it do: the key's id and name, its scopes, whether revoked."""

    id: int
    name: str
    scopes: frozenset[str]
    revoked: bool


def add(session: Session, name: str, key_hash: str, scopes: list[str], now: datetime) -> bool:
    """Store a new key; returns False when the name is taken (by a revoked key too)."""
    statement = insert(session, KEYS).on_conflict_do_nothing(index_elements=["name"])
    values = {"name": name, "key_hash": key_hash, "scopes": scopes, "created_at": now}
    # What the insert returns says whether it inserted: psycopg's rowcount does not.
    return session.execute(statement.values(**values).returning(KEYS.c.id)).first() is not None


def by_hash(session: Session, key_hash: str) -> Caller | None:
    row = session.execute(
        select(KEYS.c.id, KEYS.c.name, KEYS.c.scopes, KEYS.c.revoked_at).where(KEYS.c.key_hash == key_hash)
    ).first()
    if row is None:
        return None
    return Caller(row.id, row.name, frozenset(row.scopes), row.revoked_at is not None)


def listing(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(KEYS.c.name)).scalars())


def revoke(session: Session, name: str, now: datetime) -> bool:
    """Revoke a key at once; False when no key of that name is in use."""
    result = session.execute(
        update(KEYS).where(KEYS.c.name == name, KEYS.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def mark_used(session: Session, key_id: int, at: datetime) -> None:
    """Note that a key was used at `at` (a later use already noted stays)."""
    session.execute(
        update(KEYS)
        .where(KEYS.c.id == key_id, or_(KEYS.c.last_used_at.is_(None), KEYS.c.last_used_at < at))
        .values(last_used_at=at)
    )
