"""The time zones contacts are in, for schedules read in each contact's zone."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session

from automator.store import table
from automator.tables import Contact

CONTACTS = table(Contact)


def present(session: Session) -> list[str]:
    """Each distinct `timezone` among contacts (none: left out). A loose scan of the
    timezone index: each step reads the next name after the one before, so that it costs
    what a few lookups per zone cost, however many contacts share them."""
    first = select(func.min(CONTACTS.c.timezone).label("name")).cte("zone", recursive=True)
    after = CONTACTS.alias("after")
    following = select(func.min(after.c.timezone)).where(after.c.timezone > first.c.name).scalar_subquery()
    zones = first.union_all(select(following).where(first.c.name.is_not(None)))
    return [name for name in session.scalars(select(zones.c.name)) if name is not None]
