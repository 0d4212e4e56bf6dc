"""The windows of a rule's lookup: which due occurrences are new to it since its mark. They
came due since (the first), their rows arrived late (the second), or their contact changed
in a way that may turn the rule's verdict (the third, read from the contact change log,
`store.changes`). Each is a slice of the lateness window with bounds bound when the lookup
runs, so that a rule's statement is built once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.selectable import CompoundSelect

from automator.model import Condition, DateTrigger, Rule, ScheduleTrigger
from automator.store import table
from automator.store.occurrences import Watermark
from automator.store.statements import per_row
from automator.tables import Contact, ContactChange, UTCDateTime

# A lookup's windows (see `slices`), bound when it runs.
LATEST = bindparam("latest", type_=UTCDateTime())  # the window of occurrences new since the mark
AFTER_MARK = bindparam("after_mark", type_=UTCDateTime())
LATE_UNTIL = bindparam("late_until", type_=UTCDateTime())  # the window of rows arrived late
EARLIEST = bindparam("earliest", type_=UTCDateTime())
SEQ = bindparam("seq", type_=Integer())
CHANGED_FROM = bindparam("changed_from", type_=BigInteger())  # the window of changed contacts
NO_CHANGES = 2**63 - 1  # a position past every change: that window is empty
HISTORY_FROM = bindparam("history_from", type_=BigInteger())  # see `candidates._event_query`
RESOLUTION = timedelta(microseconds=1)

CONTACTS = table(Contact)
CHANGES = table(ContactChange)


def fresh_until(rule: Rule, now: datetime) -> datetime:
    """A new rule's mark (or a journey step's): as if it had last looked just over its max
    lateness ago, so that every due occurrence is new to it (the first window alone)."""
    return now - rule.lateness - timedelta(seconds=1)


def slices(
    rule: Rule,
    column: Any,
    seq: Any,
    contact_id: Any,
    kind: tuple[Any, str] | None = None,
    also: Select[Any] | None = None,
) -> list[list[ColumnElement[bool]]]:
    """`column + offset` is due by now, not older than max lateness, and new since the mark:
    either its time came after the mark, or its row arrived since (a late event), or,
    neither, its contact changed since (`changed_since`). The bounds are bound when the
    lookup runs (see `values`).

    Three disjoint windows, queried apart and joined by UNION ALL, so that each reads only
    its own slice: with an OR between them the whole lateness window would be read. Each
    window has one lower bound on `column`: given two, SQLite may take the looser one for
    the index range and read the whole lateness window to filter it by the other. A mark
    older than max lateness leaves the second and third windows empty.

    `kind` (column, value) is a test on the row's kind that an index starts with, next to
    the time: compared per row in the third window, which that index must not lead.
    `also` (contact ids) adds contacts to the third window's changed ones, each read once.
    """
    indexed = [] if kind is None else [kind[0] == kind[1]]
    unindexed = [] if kind is None else [per_row(kind[0]) == kind[1]]
    return [
        [*indexed, column <= LATEST, column >= AFTER_MARK],
        [*indexed, column <= LATE_UNTIL, column >= EARLIEST, seq > SEQ],
        [
            *unindexed,
            per_row(column) <= LATE_UNTIL,
            per_row(column) >= EARLIEST,
            seq <= SEQ,
            changed_since(rule, contact_id, also),
        ],
    ]


def changed_since(rule: Rule, contact_id: Any, also: Select[Any] | None = None) -> ColumnElement[bool]:
    """The contact changed since the mark in a way that may turn the rule's verdict: the
    window is read from the change log, in position order, then the trigger's table by its
    contact's index, so that it costs what the changed contacts' occurrences cost, whatever
    the store's size. Its time bounds are compared `per_row`: through the time index SQLite
    would read the whole lateness window.

    Only the changed contacts now in the rule's stages, and of them those that may not have
    been when it last looked (they left a stage outside the rule's), or whose stage, fields
    or tags changed if the rule reads them: after a dispatch whose `then` moves and tags
    thousands of contacts, a rule reads again the occurrences of those it may now target,
    not of all of them. `also` (contact ids) adds others, each read once with them."""
    contact = CONTACTS.alias("changed")
    named = {cond.field for cond in rule.when if isinstance(cond, Condition) and cond.scope == "contact"}
    could_turn = [
        and_(CHANGES.c.stage, or_(CHANGES.c.from_stage.is_(None), CHANGES.c.from_stage.not_in(rule.stages)))
    ]
    if "contact.stage" in named:
        could_turn.append(CHANGES.c.stage)
    if named - {"contact.stage", "contact.tags"} or isinstance(rule.trigger, (DateTrigger, ScheduleTrigger)):
        # Its conditions read fields, or its dates are attributes, or it fires in contacts' zones.
        could_turn.append(CHANGES.c.fields)
    if "contact.tags" in named:
        could_turn.append(CHANGES.c.tags)
    changed = (
        select(CHANGES.c.contact_id)
        .join(contact, contact.c.id == CHANGES.c.contact_id)
        .where(CHANGES.c.position >= CHANGED_FROM, contact.c.stage.in_(rule.stages), or_(*could_turn))
    )
    return contact_id.in_(changed if also is None else changed.union(also))


def values(rule: Rule, now: datetime, mark: Watermark) -> dict[str, Any]:
    latest = now - rule.offset
    earliest = latest - rule.lateness
    since = mark.until - rule.offset
    return {
        "now": now,
        "latest": latest,
        "after_mark": max(earliest, since + RESOLUTION),  # times are stored to the microsecond
        "late_until": min(since, latest),
        "earliest": earliest,
        "seq": mark.seq,
        # An empty window of old occurrences needs no look at the changes or new history either.
        "changed_from": mark.changes if min(since, latest) >= earliest else NO_CHANGES,
        "history_from": mark.seq if min(since, latest) >= earliest else NO_CHANGES,
    }


def union(query: Select[Any], parts: list[list[ColumnElement[bool]]]) -> CompoundSelect:
    return union_all(*(query.where(*part) for part in parts))
