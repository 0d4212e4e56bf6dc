"""Suppressed addresses: they get nothing from any rule.

An erased contact's address is kept only as a hash (`hashed`): it cannot be read back, yet
every check here finds it, and an erased address that arrives again (an import, the API) is
suppressed by its address as well (`suppress_returning`), which the rule lookups compare."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel import Session

from automator.staged import naive_utc
from automator.store import insert, table
from automator.store.statements import listed, one_of
from automator.tables import Suppression

SUPPRESSIONS = table(Suppression)
REASONS = ("unsubscribed", "bounced", "complained", "blocked")
ERASED = "erased"  # the reason of a hashed suppression
HASHED = "sha256:"
RETURNED = "erased before, arrived again"  # the note of an erased address's suppression by address


def hashed(email: str) -> str:
    """How an erased address is suppressed: `sha256:` and the hex digest of the address."""
    return HASHED + hashlib.sha256(email.strip().lower().encode()).hexdigest()


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
    """Lift an address's suppression, its hashed one (an erasure's) too."""
    result = session.execute(delete(SUPPRESSIONS).where(SUPPRESSIONS.c.email.in_([email, hashed(email)])))
    return bool(getattr(result, "rowcount", 0))


def get(session: Session, email: str) -> Suppression | None:
    return session.get(Suppression, email) or session.get(Suppression, hashed(email))


# `suppress_returning` on PostgreSQL, for addresses as the store keeps them (stripped,
# lowercased): each hashed by the server as `hashed` does, the addresses sent as one binary
# array. An import's batch makes thousands of contacts, and hashing their addresses in Python
# and sending the hashes as text cost the importing process more than the rest of a batch.
_RETURNING_ERASED = f"""
INSERT INTO suppression (email, reason, note, created_at)
SELECT a.email, '{ERASED}', '{RETURNED}', %(now)s
FROM unnest(%(emails)b::text[]) AS a(email)
JOIN suppression AS s ON s.email = '{HASHED}' || encode(sha256(convert_to(a.email, 'UTF8')), 'hex')
ON CONFLICT (email) DO NOTHING
"""


def suppress_returning(session: Session, emails: Collection[str], now: datetime) -> None:
    """Suppress by their address the erased addresses among `emails` (contacts being made,
    their addresses as the store keeps them): the rule lookups find a suppression by the
    contact's address, never by its hash."""
    if not emails:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Through SQLAlchemy's connection, which passes the SQL to psycopg as it is: an
        # error reaches the caller as SQLAlchemy's, as every other statement's does (the
        # API retries a deadlock).
        values = {"emails": list(emails), "now": naive_utc(now)}
        session.connection().exec_driver_sql(_RETURNING_ERASED, values)
        return
    hashes = {hashed(email): email for email in emails}
    erased = one_of(SUPPRESSIONS.c.email, hashes)
    found = session.execute(select(SUPPRESSIONS.c.email).where(erased)).scalars()
    add_many(session, [(hashes[value], RETURNED) for value in found], ERASED, now)


def listing(session: Session) -> list[Suppression]:
    return list(session.execute(select(Suppression).order_by(SUPPRESSIONS.c.created_at.desc())).scalars())


# Every batch a dispatcher claims asks this: built once, its addresses bound as one parameter.
_SUPPRESSED = select(SUPPRESSIONS.c.email).where(
    one_of(SUPPRESSIONS.c.email, listed("emails", SUPPRESSIONS.c.email))
)


def among(session: Session, emails: set[str]) -> set[str]:
    """Which of these addresses are suppressed, by their address or as erased (a hash)."""
    if not emails:
        return set()
    hashes = {hashed(email): email for email in emails}
    found = session.execute(_SUPPRESSED, {"emails": [*emails, *hashes]})
    return {hashes.get(value, value) for value in found.scalars()}
