"""What the data in the store carries: the attribute names and locales contacts have, the
event types events have and the properties of each, and whether any contact holds a value.
`automator check --store` checks templates and conditions against them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func, select, true
from sqlmodel import Session

from automator.store import table
from automator.tables import Contact, Event

CONTACTS = table(Contact)
EVENTS = table(Event)


def attribute_names(session: Session) -> set[str]:
    """Every attribute name any contact has."""
    query = _keys(session, CONTACTS.c.attributes, CONTACTS)
    return {name for (name,) in session.execute(query)}


def locales(session: Session) -> dict[str, int]:
    """How many contacts have each locale (those without one are left out)."""
    locale = CONTACTS.c.locale
    query = select(locale, func.count()).where(locale.is_not(None)).group_by(locale)
    return {name: count for name, count in session.execute(query)}


def event_types(session: Session) -> set[str]:
    """Every event type any event has.

    Read as a skip scan of the index that leads with the type: each type found asks the
    index for the first one after it, so the query costs a lookup per type, not a read of
    every event (millions of rows) as `SELECT DISTINCT type` does on either store."""
    column = EVENTS.c.type
    found = select(func.min(column).label("type")).cte("event_types", recursive=True)
    following = select(func.min(column)).where(column > found.c.type).scalar_subquery()
    found = found.union_all(select(following).where(found.c.type.is_not(None)))
    return {name for (name,) in session.execute(select(found.c.type).where(found.c.type.is_not(None)))}


def event_properties(session: Session, types: Collection[str]) -> dict[str, set[str]]:
    """For each of `types` that has events in the store, every top-level property its events
    carry; a type without events is left out (nothing is known of it)."""
    if not types:
        return {}
    query = _keys(session, EVENTS.c.properties, EVENTS, EVENTS.c.type).where(EVENTS.c.type.in_(list(types)))
    found: dict[str, set[str]] = {}
    for event_type, name in session.execute(query):
        found.setdefault(event_type, set()).add(name)
    types_seen = select(EVENTS.c.type).where(EVENTS.c.type.in_(list(types))).distinct()
    for (event_type,) in session.execute(types_seen):
        found.setdefault(event_type, set())  # events with no property at all
    return found


def _keys(
    session: Session, column: ColumnElement[Any], source: Table, *grouped: ColumnElement[Any]
) -> Select[Any]:
    """The distinct keys of a JSON object column (with the columns in `grouped` beside them)."""
    if session.get_bind().dialect.name == "postgresql":
        return select(*grouped, func.json_object_keys(column)).select_from(source).distinct()
    each = func.json_each(column).table_valued("key")
    return select(*grouped, each.c.key).select_from(source).join(each, true()).distinct()


def holds_any(session: Session, name: str, values: Collection[str]) -> bool:
    """Whether any contact's attribute `name` holds one of the text `values`."""
    value = CONTACTS.c.attributes[name].as_string()
    return session.execute(select(CONTACTS.c.id).where(value.in_(list(values))).limit(1)).first() is not None
