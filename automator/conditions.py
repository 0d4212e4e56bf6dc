"""Compile a rule's declarative conditions into SQLAlchemy expressions (never strings, never eval).

Tags and history compile to EXISTS and COUNT subqueries tied to the contact's row, over the
(contact, tag) key and the (contact, type, time) index of events: evaluated set-wise with
the rest of a rule's lookup, never contact by contact."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, bindparam, exists, func, or_, select, true

from automator.model import CONTACT_COLUMNS, AnyCondition, Condition, HistoryCondition
from automator.store import table
from automator.store.sqltime import shifted
from automator.tables import ContactTag, Event, UTCDateTime

NOW = bindparam("now", type_=UTCDateTime())  # the tick's time, bound when a lookup runs
TAGS = table(ContactTag)
EVENTS = table(Event)


def compile_conditions(
    conditions: list[AnyCondition], contact: FromClause, event: FromClause | None
) -> ColumnElement[bool]:
    """AND of all conditions; `contact` and `event` are the (aliased) tables in the query."""
    if not conditions:
        return true()
    return and_(*(compile_condition(cond, contact, event) for cond in conditions))


def compile_condition(
    cond: AnyCondition, contact: FromClause, event: FromClause | None
) -> ColumnElement[bool]:
    """One condition as a boolean SQL expression over the contact row, its tags, its
    history of events or the event's JSON."""
    if isinstance(cond, HistoryCondition):
        return _history(cond, contact)
    if cond.field == "contact.tags":
        return _tags(cond, contact)
    operand = _operand(cond, contact, event)
    value = cond.value
    match cond.op:
        case "exists":
            return operand.is_not(None) if value in (True, None) else operand.is_(None)
        case "eq":
            return operand.is_(None) if value is None else operand == value
        case "ne":
            return operand.is_not(None) if value is None else or_(operand.is_(None), operand != value)
        case "gt":
            return operand > value
        case "gte":
            return operand >= value
        case "lt":
            return operand < value
        case "lte":
            return operand <= value
        case "in":
            return operand.in_(value)
        case "not_in":
            return or_(operand.is_(None), operand.not_in(value))
    raise ValueError(f"unknown operator {cond.op}")  # unreachable: the model validates ops


def _operand(cond: Condition, contact: FromClause, event: FromClause | None) -> Any:
    if cond.scope == "contact" and cond.name in CONTACT_COLUMNS:
        return contact.c[cond.name]
    if cond.scope == "contact":
        document = contact.c.attributes[cond.name]
    elif event is not None:
        document = event.c.properties[cond.name]
    else:
        raise ValueError(f"{cond.field}: this trigger has no event")
    sample = cond.value[0] if isinstance(cond.value, list) and cond.value else cond.value
    if isinstance(sample, bool):
        return document.as_boolean()
    if isinstance(sample, int | float):
        return document.as_float()
    return document.as_string()


def _tags(cond: Condition, contact: FromClause) -> ColumnElement[bool]:
    """`contact.tags: {contains: vip}` (any of a list), or `not_contains` (none of them)."""
    tagged = exists().where(TAGS.c.contact_id == contact.c.id, TAGS.c.tag.in_(cond.value))
    return tagged if cond.op == "contains" else ~tagged


def _history(cond: HistoryCondition, contact: FromClause) -> ColumnElement[bool]:
    """How many events of a type the contact had by now (within the span, if given),
    compared: "at least one" and "none" as EXISTS, other counts as a COUNT bounded by the
    index range of the contact's events of that type."""
    past = EVENTS.alias(f"history_{cond.event}")
    where = [past.c.contact_id == contact.c.id, past.c.type == cond.event, past.c.at <= NOW]
    if cond.within is not None:
        where.append(past.c.at > shifted(NOW, -cond.within))
    some = exists().where(*where)
    if (cond.op, cond.count) in (("gte", 1), ("gt", 0), ("ne", 0)):
        return some
    if (cond.op, cond.count) in (("eq", 0), ("lt", 1), ("lte", 0)):
        return ~some
    counted = select(func.count()).where(*where).scalar_subquery()
    return {
        "eq": counted == cond.count,
        "ne": counted != cond.count,
        "gt": counted > cond.count,
        "gte": counted >= cond.count,
        "lt": counted < cond.count,
        "lte": counted <= cond.count,
    }[cond.op]
