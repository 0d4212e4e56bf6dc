"""Set-wise rule evaluation: one SQL statement per rule finds every due trigger occurrence.

A candidate is due when its send time (occurrence + offset) lies in
`[now - max_lateness, now]`; it is new when that send time passed the rule's watermark, its
row arrived after the last tick, or its contact changed since (a contact may match the rule
now, by a new attribute, stage or tag, that did not when the occurrence came due).
Occurrences already messaged are left out, so a re-run finds nothing. Yearly dates read their
whole window each tick (`store.yearly`); a schedule in contacts' zones runs per firing (`_lookups`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.sql.selectable import CompoundSelect
from sqlmodel import Session

from automator import conditions
from automator.conditions import compile_conditions
from automator.model import (
    DateTrigger,
    EventTrigger,
    HistoryCondition,
    Rule,
    ScheduleTrigger,
    StageTrigger,
)
from automator.schedules import firings
from automator.status import COUNTED
from automator.store import table, windows, yearly, zones
from automator.store.occurrences import Addressee as Addressee
from automator.store.occurrences import Candidate as Candidate
from automator.store.occurrences import Watermark as Watermark
from automator.store.occurrences import addressee as addressee
from automator.store.sqltime import shifted
from automator.store.statements import per_row
from automator.tables import (
    Contact,
    ContactChange,
    ContactDate,
    Event,
    Message,
    StageChange,
    Suppression,
    UTCDateTime,
)

Query = Select[Any] | CompoundSelect

# What changes from one tick to the next is bound when a lookup runs; a rule's statement is
# built (and compiled by SQLAlchemy) once. The windows' bounds are in `store.windows`.
NOW = conditions.NOW
FIRED = bindparam("fired", type_=UTCDateTime())  # a schedule's firing
LIMITED_AFTER = bindparam("limited_after", type_=UTCDateTime())  # a firing's span of its rule's limit
LIMITED_UNTIL = bindparam("limited_until", type_=UTCDateTime())
ZONES = bindparam("zones", type_=String(), expanding=True)  # the zones a local schedule fired in
STATEMENTS_KEPT = 256
_statements: dict[tuple[str, str, bool, bool], Query] = {}
CONTACTS = table(Contact)
EVENTS = table(Event)
DATES = table(ContactDate)
STAGES = table(StageChange)
MESSAGES = table(Message)
SUPPRESSIONS = table(Suppression)
CHANGES = table(ContactChange)


def find(
    session: Session, rule: Rule, now: datetime, mark: Watermark, zone: ZoneInfo = ZoneInfo("UTC")
) -> list[Candidate]:
    """Every due, new, not yet messaged occurrence of a rule's trigger for targeted contacts.

    `zone` is the project's time zone, in which schedules are read.
    """
    return [candidate for batch in batches(session, rule, now, mark, zone) for candidate in batch]


def batches(
    session: Session, rule: Rule, now: datetime, mark: Watermark, zone: ZoneInfo, size: int = 64
) -> Iterator[list[Candidate]]:
    """`find`'s candidates, `size` at a time as SQLite finds them: the caller can queue
    the first ones while the rest are still being looked for."""
    for statement, values, place in _lookups(session, rule, now, mark, zone):
        for rows in session.execute(statement, values).partitions(size):
            found = [candidate for row in rows if (candidate := _candidate(row, place)) is not None]
            if found:
                yield found


Placing = Callable[[Any], tuple[str, datetime] | None] | None


def _lookups(
    session: Session, rule: Rule, now: datetime, mark: Watermark, zone: ZoneInfo
) -> Iterator[tuple[Query, dict[str, Any], Placing]]:
    """The statements a tick runs for a rule, with their values: one, or one per year for
    a yearly date (whose `place` completes each row or drops it: `store.yearly`), or one per
    firing for a schedule (in contacts' zones: one per group of zones that fired together)."""
    trigger = rule.trigger
    if isinstance(trigger, DateTrigger) and trigger.yearly:
        for year in yearly.each_year(rule, now, zone):
            yield _statement(rule), year.values(), year.place
    elif isinstance(trigger, ScheduleTrigger):
        present = zones.present(session) if trigger.timezone == "contact" else []
        for group in firings(trigger, present, zone, now, now - rule.lateness):
            # Fired since the last tick: every targeted contact; before: those changed since.
            changed_only = group.fired <= mark.until
            values = {"now": now, "fired": group.fired, "changed_from": mark.changes, "seq": mark.seq}
            if rule.limit is not None:
                due = group.fired + rule.offset
                values |= {"limited_after": due - rule.limit.per, "limited_until": due}
            values["zones"] = list(group.zones)
            yield _statement(rule, changed_only, group.unzoned), values, None
    else:
        yield _statement(rule), windows.values(rule, now, mark), None


def _candidate(row: Any, place: Placing) -> Candidate | None:
    placed = (_occurrence(row), row.occurred_at) if place is None else place(row)
    if placed is None:
        return None
    occurrence, occurred_at = placed
    suppressed = bool(row.suppressed)
    return Candidate(addressee(row), occurrence, occurred_at, row.event_id, suppressed, row.properties)


def _statement(rule: Rule, changed_only: bool = False, unzoned: bool = True) -> Query:
    """The rule's lookup, built the first time it is asked for; `changed_only`: a schedule's
    firing seen already, for the contacts changed since; `unzoned`: see `Firing`."""
    key = (rule.id, rule.model_dump_json(), changed_only, unzoned)
    statement = _statements.get(key)
    if statement is None:
        if len(_statements) >= STATEMENTS_KEPT:
            _statements.clear()
        trigger = rule.trigger
        if isinstance(trigger, ScheduleTrigger):
            statement = _schedule_query(rule, changed_only, unzoned)
        elif isinstance(trigger, EventTrigger):
            statement = _event_query(rule, trigger)
        elif isinstance(trigger, DateTrigger):
            statement = _date_query(rule, trigger)
        else:
            statement = _stage_query(rule, trigger)
        _statements[key] = statement
    return statement


def _occurrence(row: Any) -> str:
    """The occurrence part of the dedupe key; a date trigger's is the date itself, so a new
    renews_at is a new occurrence and the same one never is."""
    if str(row.occurrence).endswith("@"):
        return f"{row.occurrence}{row.occurred_at.isoformat()}"
    return str(row.occurrence)


def _base(rule: Rule, contact: Any) -> list[ColumnElement[bool]]:
    return [contact.c.stage.in_(rule.stages)]


def _for_targeted(rule: Rule, contact: Any, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """`condition` (the rule's `when`, which may test the event's properties) tested only
    for a contact in the rule's stages. SQLite tests a condition as soon as it has read what
    the condition names: on the event's properties alone, that is as soon as it finds the
    event in the index, and it reads the event's row (its JSON) for every event in the
    window. Named with the contact's stage, the test waits for the contact's row, and most
    events' contacts are not in the rule's stages, so most events' rows are never read. The
    plain stage test (`_base`) stays beside it: it is tested first, and it tells a query
    planner how few contacts qualify."""
    return case((contact.c.stage.in_(rule.stages), condition), else_=false())


def _suppressed(contact: Any) -> Any:
    return exists().where(SUPPRESSIONS.c.email == contact.c.email).label("suppressed")


def _addressee(contact: Any, event: Any = None) -> list[Any]:
    """The contact's fields a message needs (see `Addressee`) and the event's properties; the
    JSON comes as stored (text on SQLite): only the render workers need it decoded."""
    properties = cast(None, Text) if event is None else type_coerce(event.c.properties, Text)
    return [
        contact.c.first_name,
        contact.c.last_name,
        contact.c.locale,
        contact.c.timezone,
        contact.c.stage,
        type_coerce(contact.c.attributes, Text).label("attributes"),
        properties.label("properties"),
    ]


def _cancelled(rule: Rule, contact_id: Any, after: Any) -> ColumnElement[bool]:
    """An event of a cancelling type (`cancel_if`'s, the goal's) occurred after `after`
    (and by now)."""
    kinds = rule.cancel_events
    if not kinds:
        return false()
    other = EVENTS.alias("cancel_event")
    return or_(
        *(
            exists().where(
                other.c.contact_id == contact_id,
                other.c.type == kind,
                other.c.at > after,
                other.c.at <= NOW,
            )
            for kind in kinds
        )
    )


# A `once_per` value is the occurrence its message keeps, in the message table's unique index,
# which PostgreSQL refuses an entry of over 2,704 bytes: a longer value than this (a URL, say)
# leaves its event an occurrence of its own, its key, as an event without the property has.
ONCE_PER_LENGTH = 200


def once_per_value(value: Any) -> str | None:
    """The occurrence a `once_per` property's value names, as the lookups take it; None when
    the event is its own occurrence (no value, or one too long)."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= ONCE_PER_LENGTH else None


def _not_messaged(rule: Rule, contact_id: Any, occurrence: Any) -> ColumnElement[bool]:
    return ~exists().where(
        MESSAGES.c.rule_id == rule.id,
        MESSAGES.c.contact_id == contact_id,
        MESSAGES.c.occurrence == occurrence,
    )


def _event_query(rule: Rule, trigger: EventTrigger) -> Query:
    event, contact = EVENTS.alias("e"), CONTACTS.alias("c")
    occurrence: Any = event.c.key
    if trigger.once_per:
        once = event.c.properties[trigger.once_per].as_string()
        occurrence = func.coalesce(case((func.length(once) <= ONCE_PER_LENGTH, once)), event.c.key)
    # The subqueries are tied to the contact's row, not the event's contact_id (the same
    # value): SQLite then runs them only for events whose contact passed the stage and `when`
    # conditions, which reject most; tied to the event, they ran for every event in the window.
    where = [
        event.c.type == trigger.event,
        *_base(rule, contact),
        _for_targeted(rule, contact, compile_conditions(rule.when, contact, event)),
        ~_cancelled(rule, contact.c.id, event.c.at),
        _not_messaged(rule, contact.c.id, occurrence),
    ]
    if trigger.once_per:
        # A store may hold a message an older release queued under a longer value (SQLite any,
        # PostgreSQL one of up to about 2,700 bytes): it is this event's message all the same.
        long_value = func.coalesce(func.length(once), 0) > ONCE_PER_LENGTH
        where.append(or_(~long_value, _not_messaged(rule, contact.c.id, once)))
    if trigger.latest_per:
        where.append(~_newer_of_same(event, contact.c.id, trigger.latest_per))
    query = (
        select(
            event.c.contact_id,
            contact.c.email,
            occurrence.label("occurrence"),
            event.c.at.label("occurred_at"),
            event.c.id.label("event_id"),
            _suppressed(contact),
            *_addressee(contact, event),
        )
        .join(contact, contact.c.id == event.c.contact_id)
        .where(*where)
    )
    arrived = None
    kinds = sorted({cond.event for cond in rule.when if isinstance(cond, HistoryCondition)})
    if kinds:
        # The window of old occurrences also takes those of the contacts with a new event
        # of a `history` condition's type (an import of last week's orders may make
        # "ordered twice" true for an occurrence already due). Read through the id's range:
        # by its type SQLite would read every such event.
        new = EVENTS.alias("history_new")
        arrived = select(new.c.contact_id).where(
            new.c.id > windows.HISTORY_FROM, per_row(new.c.type).in_(kinds)
        )
    parts = windows.slices(rule, event.c.at, event.c.id, event.c.contact_id, also=arrived)
    return windows.union(query, parts)


def _newer_of_same(event: Any, contact_id: Any, key: str) -> ColumnElement[bool]:
    """A later event of the same type and the same `key` property (e.g. the same cart)."""
    newer = EVENTS.alias("newer")
    return exists().where(
        newer.c.contact_id == contact_id,
        newer.c.type == event.c.type,
        newer.c.properties[key].as_string() == event.c.properties[key].as_string(),
        newer.c.at >= event.c.at,  # a range on the index; the OR below alone would not be one
        or_(newer.c.at > event.c.at, newer.c.id > event.c.id),
        newer.c.at <= NOW,
    )


def _date_query(rule: Rule, trigger: DateTrigger) -> Query:
    date, contact = DATES.alias("d"), CONTACTS.alias("c")
    where = [
        date.c.name == trigger.attribute,
        *_base(rule, contact),
        compile_conditions(rule.when, contact, None),
    ]
    if trigger.yearly:  # the window and what stops it: see `store.yearly`
        where += yearly.where(rule, date, contact.c.id)
        return _date_select(trigger, date, contact, *yearly.columns(rule, contact.c.id)).where(*where)
    where += [
        ~exists().where(
            MESSAGES.c.rule_id == rule.id,
            MESSAGES.c.contact_id == contact.c.id,  # tied to the contact: see _event_query
            MESSAGES.c.occurred_at == date.c.value,
        ),
    ]
    # Cancelling events count from `within` before the date, else from when the trigger
    # fires; so does the goal.
    stops = [(cancel.event, cancel.within) for cancel in trigger.cancel_if]
    if rule.stopping_goal is not None:
        stops.append((rule.stopping_goal.event, None))
    for kind, within in stops:
        since = shifted(date.c.value, -within if within else trigger.offset)
        where.append(~_cancelled_since(kind, contact.c.id, since))
    query = _date_select(trigger, date, contact).where(*where)
    return windows.union(query, windows.slices(rule, date.c.value, date.c.id, date.c.contact_id))


def _date_select(trigger: DateTrigger, date: Any, contact: Any, *more: Any) -> Select[Any]:
    occurrence = literal(f"{trigger.attribute}@")  # completed with the date (or year) in Python
    return select(
        date.c.contact_id,
        contact.c.email,
        occurrence.label("occurrence"),
        date.c.value.label("occurred_at"),
        cast(None, String).label("event_id"),
        _suppressed(contact),
        *_addressee(contact),
        *more,
    ).join(contact, contact.c.id == date.c.contact_id)


def _cancelled_since(event_type: str, contact_id: Any, since: Any) -> ColumnElement[bool]:
    other = EVENTS.alias("cancel_event")
    return exists().where(
        other.c.contact_id == contact_id, other.c.type == event_type, other.c.at >= since, other.c.at <= NOW
    )


def _schedule_query(rule: Rule, changed_only: bool, unzoned: bool = True) -> Query:
    """Every targeted contact, once per firing of the schedule (`changed_only`: those of
    them changed since the mark, or made since: by id, see `rulestate.newest_ids`); in
    contacts' zones, those of the zones that fired then (`unzoned`: and those without a
    zone)."""
    contact = CONTACTS.alias("c")
    query = _scheduled(rule, contact, unzoned)
    if not changed_only:
        return query
    changed = windows.changed_since(rule, contact.c.id)
    return union_all(query.where(changed), query.where(contact.c.id > windows.SEQ, ~changed))


def _scheduled(rule: Rule, contact: Any, unzoned: bool) -> Select[Any]:
    zone = contact.c.timezone
    in_zones = or_(zone.in_(ZONES), zone.is_(None)) if unzoned else zone.in_(ZONES)
    where = [
        *([in_zones] if getattr(rule.trigger, "timezone", None) == "contact" else []),
        *_base(rule, contact),
        compile_conditions(rule.when, contact, None),
        ~exists().where(
            MESSAGES.c.rule_id == rule.id,
            MESSAGES.c.contact_id == contact.c.id,
            MESSAGES.c.occurred_at == FIRED,
        ),
        *([_under_limit(rule, contact.c.id)] if rule.limit is not None else []),
    ]
    return select(
        contact.c.id.label("contact_id"),
        contact.c.email,
        literal("schedule@").label("occurrence"),
        FIRED.label("occurred_at"),
        cast(None, String).label("event_id"),
        _suppressed(contact),
        *_addressee(contact),
    ).where(*where)


def _under_limit(rule: Rule, contact_id: Any) -> ColumnElement[bool]:
    """Fewer of the rule's journeys begun in its limit's span before the firing's due time
    than its `max` (the span of `journeys.in_span`, the statuses `enqueue._apply_limit`
    counts). A schedule's contacts over the limit are not found at all, rather than each
    recorded `skipped` at every firing: a daily digest with a monthly limit would write a
    row per contact a day."""
    assert rule.limit is not None
    begun = (
        select(func.count())
        .where(
            MESSAGES.c.rule_id == rule.id,
            MESSAGES.c.contact_id == contact_id,
            MESSAGES.c.step == 1,
            MESSAGES.c.status.in_(COUNTED),
            MESSAGES.c.due_at > LIMITED_AFTER,
            MESSAGES.c.due_at <= LIMITED_UNTIL,
        )
        .scalar_subquery()
    )
    return begun < rule.limit.max


def _stage_query(rule: Rule, trigger: StageTrigger) -> Query:
    change, contact = STAGES.alias("s"), CONTACTS.alias("c")
    where = [
        *_base(rule, contact),
        compile_conditions(rule.when, contact, None),
        ~_cancelled(rule, contact.c.id, change.c.at),
        _not_messaged(rule, contact.c.id, cast(change.c.id, String)),
    ]
    query = (
        select(
            change.c.contact_id,
            contact.c.email,
            cast(change.c.id, String).label("occurrence"),
            change.c.at.label("occurred_at"),
            cast(None, String).label("event_id"),
            _suppressed(contact),
            *_addressee(contact),
        )
        .join(contact, contact.c.id == change.c.contact_id)
        .where(*where)
    )
    entered = (change.c.to_stage, trigger.stage_entered)
    return windows.union(query, windows.slices(rule, change.c.at, change.c.id, change.c.contact_id, entered))
