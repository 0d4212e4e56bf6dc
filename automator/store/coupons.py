"""Coupons: pools imported from files, codes generated per message; one code per message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlmodel import Session

from automator.store import insert, table
from automator.store.bulk import add_rows
from automator.store.statements import one_of
from automator.tables import Coupon

COUPONS = table(Coupon)


def import_pool(
    session: Session,
    pool: str,
    codes: list[str],
    percent_off: int | None,
    expires_at: datetime | None,
    now: datetime,
) -> int:
    """Add codes to a pool; codes already known are skipped. Returns how many were new."""
    if not codes:
        return 0  # an INSERT of no rows would be one row of defaults
    rows = [
        {
            "code": code,
            "pool": pool,
            "percent_off": percent_off,
            "expires_at": expires_at,
            "created_at": now,
        }
        for code in codes
    ]
    statement = insert(session, COUPONS).on_conflict_do_nothing(index_elements=["code"])
    return len(session.execute(statement.returning(COUPONS.c.id), rows).all())


def free_codes(session: Session, pool: str, limit: int) -> list[Any]:
    """Up to `limit` free codes of a pool, oldest first; on PostgreSQL locked FOR UPDATE SKIP
    LOCKED, so two daemons never pick the same code."""
    return list(
        session.execute(
            select(COUPONS)
            .where(COUPONS.c.pool == pool, COUPONS.c.message_id.is_(None))
            .order_by(COUPONS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    )


def assign(session: Session, owners: dict[int, tuple[int, int]], rule_id: str, now: datetime) -> set[int]:
    """Give pool codes to messages: coupon id → (message id, contact id). Returns the coupon
    ids actually given; one taken meanwhile is not (the UPDATE re-checks it is free).

    One executemany, then one read back: a single UPDATE with a CASE per row would be
    compiled afresh for every chunk size, and compiling it costs more than running it."""
    if not owners:
        return set()
    session.execute(
        update(COUPONS)
        .where(COUPONS.c.id == bindparam("coupon"), COUPONS.c.message_id.is_(None))
        .values(
            message_id=bindparam("message"), contact_id=bindparam("contact"), rule_id=rule_id, assigned_at=now
        ),
        [
            {"coupon": coupon, "message": message, "contact": contact}
            for coupon, (message, contact) in owners.items()
        ],
    )
    given = session.execute(select(COUPONS.c.id, COUPONS.c.message_id).where(COUPONS.c.id.in_(owners))).all()
    return {coupon for coupon, message in given if message == owners[coupon][0]}


def existing_codes(session: Session, codes: set[str]) -> set[str]:
    """Which of these codes the store holds already."""
    if not codes:
        return set()
    return set(session.execute(select(COUPONS.c.code).where(COUPONS.c.code.in_(codes))).scalars())


def add_generated(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store generated codes; each row names its message (one statement, nothing read back:
    `bulk.add_rows`). A code that exists already fails the whole insert."""
    add_rows(session, COUPONS, rows)


def for_message(session: Session, message_id: int) -> Coupon | None:
    return session.execute(select(Coupon).where(COUPONS.c.message_id == message_id)).scalars().first()


def free_count(session: Session, pool: str) -> int:
    """How many codes of a pool no message has taken (a read: nothing is locked)."""
    query = select(func.count()).where(COUPONS.c.pool == pool, COUPONS.c.message_id.is_(None))
    return int(session.execute(query).scalar_one())


def pool_counts(session: Session) -> dict[str, tuple[int, int]]:
    """pool → (free codes, taken codes)."""
    counts: dict[str, list[int]] = {}
    for pool, message_id in session.execute(
        select(COUPONS.c.pool, COUPONS.c.message_id).where(COUPONS.c.pool.is_not(None))
    ):
        counts.setdefault(pool, [0, 0])[message_id is not None] += 1
    return {pool: (free, taken) for pool, (free, taken) in counts.items()}


def return_to_pool(session: Session, message_ids: list[int]) -> None:
    """The pool codes these messages took go back to their pools (the messages never go
    out); generated codes stay with their messages."""
    session.execute(
        update(COUPONS)
        .where(one_of(COUPONS.c.message_id, message_ids), COUPONS.c.pool.is_not(None))
        .values(message_id=None, contact_id=None, rule_id=None, assigned_at=None)
    )
