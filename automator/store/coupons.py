"""Coupons: pools imported from files, codes generated per message; one code per message."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session

from automator.schema import Coupon
from automator.store import insert, table

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


def take_from_pool(
    session: Session, pool: str, message_id: int, contact_id: int, rule_id: str, now: datetime
) -> Coupon | None:
    """Assign a free code of the pool to a message, or None when the pool is empty.

    The UPDATE re-checks `message_id IS NULL`, so two dispatchers racing for one code cannot
    both win it; the loser tries the next code.
    """
    for _ in range(5):
        free = session.execute(
            select(COUPONS.c.id)
            .where(COUPONS.c.pool == pool, COUPONS.c.message_id.is_(None))
            .order_by(COUPONS.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar()
        if free is None:
            return None
        taken = session.execute(
            update(COUPONS)
            .where(COUPONS.c.id == free, COUPONS.c.message_id.is_(None))
            .values(message_id=message_id, contact_id=contact_id, rule_id=rule_id, assigned_at=now)
        )
        if getattr(taken, "rowcount", 0):
            return session.get(Coupon, free)
    return None


def for_message(session: Session, message_id: int) -> Coupon | None:
    return session.execute(select(Coupon).where(COUPONS.c.message_id == message_id)).scalars().first()


def pool_counts(session: Session) -> dict[str, tuple[int, int]]:
    """pool → (free codes, taken codes)."""
    counts: dict[str, list[int]] = {}
    for pool, message_id in session.execute(
        select(COUPONS.c.pool, COUPONS.c.message_id).where(COUPONS.c.pool.is_not(None))
    ):
        counts.setdefault(pool, [0, 0])[message_id is not None] += 1
    return {pool: (free, taken) for pool, (free, taken) in counts.items()}
