"""Compile a rule's declarative conditions into SQLAlchemy expressions (never strings, never eval)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_, true

from automator.model import CONTACT_COLUMNS, Condition


def compile_conditions(
    conditions: list[Condition], contact: FromClause, event: FromClause | None
) -> ColumnElement[bool]:
    """AND of all conditions; `contact` and `event` are the (aliased) tables in the query."""
    if not conditions:
        return true()
    return and_(*(compile_condition(cond, contact, event) for cond in conditions))


def compile_condition(cond: Condition, contact: FromClause, event: FromClause | None) -> ColumnElement[bool]:
    """One condition as a boolean SQL expression over the contact row or the event's JSON."""
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
