"""The support console's queries: the queue listing (filtered, keyset-paginated, counted by
status), each rule's recent activity, contact search, and bulk actions on a selection.

The listing pages on (created_at, id), newest first, from the key of the row a page ended
on, never with OFFSET: page 20,000 of a million messages costs what page 1 costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, distinct, func, or_, select, update
from sqlmodel import Session

from automator import casing
from automator.status import CANCEL, HOLD, HoldKind, Status
from automator.store import contacts, coupons, table
from automator.store.audit import AUDIT
from automator.store.messages import HISTORY, MESSAGES
from automator.store.statements import prefix_range
from automator.tables import Contact, Message

CONTACTS = table(Contact)


@dataclass(frozen=True)
class MessageFilter:
    """A selection of messages: every field that is set must hold."""

    status: str | None = None
    rule: str | None = None
    search: str = ""  # the start of an address, or (without an '@') words of the subject
    since: datetime | None = None  # queued at or after
    until: datetime | None = None  # queued before


@dataclass(frozen=True)
class Page:
    """One page of the listing; `newer`/`older` are the ids to page from, when there is more."""

    messages: list[Message]
    newer: int | None = None
    older: int | None = None


Key = tuple[datetime, int]


def page(
    session: Session,
    where: MessageFilter,
    before: int | None = None,
    after: int | None = None,
    size: int = 50,
) -> Page:
    """The `size` messages just older than message `before` (or just newer than `after`, or
    the newest), newest first."""
    conditions = _conditions(session, where)
    key = _key(session, after if after is not None else before)
    forward = after is not None and key is not None
    if key is not None:
        conditions.append(_beyond(key, newer=forward))
    order = (MESSAGES.c.created_at, MESSAGES.c.id)
    query = select(Message).where(*conditions).limit(size + 1)
    query = query.order_by(*order) if forward else query.order_by(*(column.desc() for column in order))
    rows = list(session.execute(query).scalars())
    more = len(rows) > size
    rows = list(reversed(rows[:size])) if forward else rows[:size]
    if not rows:
        return Page([])
    first, last = _row_key(rows[0]), _row_key(rows[-1])
    newer = more if forward else key is not None and _exists(session, where, first, newer=True)
    older = more if not forward else _exists(session, where, last, newer=False)
    return Page(rows, newer=first[1] if newer else None, older=last[1] if older else None)


def counts_by_status(session: Session, where: MessageFilter) -> dict[str, int]:
    """How many messages of the selection (whatever its status filter) are in each status."""
    everything = MessageFilter(None, where.rule, where.search, where.since, where.until)
    rows = session.execute(
        select(MESSAGES.c.status, func.count())
        .where(*_conditions(session, everything))
        .group_by(MESSAGES.c.status)
    )
    return {status: count for status, count in rows}


def _conditions(session: Session, where: MessageFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.status:
        conditions.append(MESSAGES.c.status == where.status)
    if where.rule:
        conditions.append(MESSAGES.c.rule_id == where.rule)
    if where.since is not None:
        conditions.append(MESSAGES.c.created_at >= where.since)
    if where.until is not None:
        conditions.append(MESSAGES.c.created_at < where.until)
    text = where.search.strip()
    if "@" in text:  # an address: the contacts' index answers at once
        conditions.append(_to_address_starting(session, text.lower()))
    elif text:
        conditions.append(
            or_(
                _to_address_starting(session, text.lower()),
                MESSAGES.c.subject.icontains(text, autoescape=True),
            )
        )
    return conditions


def _to_address_starting(session: Session, prefix: str) -> ColumnElement[bool]:
    """Messages to the contacts whose address starts with `prefix`: found through the
    contacts' email index and the messages' contact index (the message table keeps no
    index of its own on the address, one less to write for every message queued)."""
    matching = select(CONTACTS.c.id).where(_starts_with(session, CONTACTS.c.email, prefix))
    return MESSAGES.c.contact_id.in_(matching)


def _starts_with(session: Session, column: Any, prefix: str) -> ColumnElement[bool]:
    """A prefix match that SQLite answers from the column's index.

    SQLite compares text byte-wise, so a range is exactly a prefix match and an index range
    scan (its LIKE is case-insensitive and scans everything). PostgreSQL's linguistic
    collations do not order that way, so it gets LIKE.
    """
    if session.get_bind().dialect.name == "sqlite":
        return prefix_range(column, prefix)
    result: ColumnElement[bool] = column.startswith(prefix, autoescape=True)
    return result


def _key(session: Session, message_id: int | None) -> Key | None:
    if message_id is None:
        return None
    created = session.execute(select(MESSAGES.c.created_at).where(MESSAGES.c.id == message_id)).scalar()
    return None if created is None else (created, message_id)


def _row_key(message: Message) -> Key:
    assert message.id is not None
    return message.created_at, message.id


def _beyond(key: Key, newer: bool) -> ColumnElement[bool]:
    """Rows after `key` in the listing's order: the `<=` bounds an index range scan, the
    `or_` settles ties on created_at by id."""
    created, id_ = key
    if newer:
        return and_(
            MESSAGES.c.created_at >= created, or_(MESSAGES.c.created_at > created, MESSAGES.c.id > id_)
        )
    return and_(MESSAGES.c.created_at <= created, or_(MESSAGES.c.created_at < created, MESSAGES.c.id < id_))


def _exists(session: Session, where: MessageFilter, key: Key, newer: bool) -> bool:
    query = select(MESSAGES.c.id).where(*_conditions(session, where), _beyond(key, newer)).limit(1)
    return session.execute(query).first() is not None


@dataclass
class RuleActivity:
    """What a rule did since some time: messages it queued, and messages sent or cancelled."""

    queued: int = 0
    sent: int = 0
    cancelled: int = 0


def activity_since(session: Session, since: datetime) -> dict[str, RuleActivity]:
    """rule id → its activity since `since`."""
    activity: dict[str, RuleActivity] = {}
    queued = session.execute(
        select(MESSAGES.c.rule_id, func.count())
        .where(MESSAGES.c.created_at >= since)
        .group_by(MESSAGES.c.rule_id)
    )
    for rule_id, count in queued:
        activity.setdefault(rule_id, RuleActivity()).queued = count
    # sent and cancelled are final: each message has at most one such history line.
    ended = session.execute(
        select(MESSAGES.c.rule_id, HISTORY.c.status, func.count(distinct(HISTORY.c.message_id)))
        .join(MESSAGES, MESSAGES.c.id == HISTORY.c.message_id)
        .where(HISTORY.c.status.in_(("sent", "cancelled")), HISTORY.c.at >= since)
        .group_by(MESSAGES.c.rule_id, HISTORY.c.status)
    )
    for rule_id, status, count in ended:
        setattr(activity.setdefault(rule_id, RuleActivity()), status, count)
    return activity


def contacts_matching(session: Session, text: str, limit: int = 50) -> tuple[list[Contact], bool]:
    """Contacts whose address starts with `text`, or (without an '@') whose first, last or
    whole name does, in any case: at most `limit`, in address order, and whether more match.
    Each part is a range of an index (the address's, each name's in lower case)."""
    prefix = casing.unicode_lower(text.strip())
    by_address = (
        select(Contact)
        .where(_starts_with(session, CONTACTS.c.email, prefix))
        .order_by(CONTACTS.c.email)
        .limit(limit + 1)
    )
    found = {contact.id: contact for contact in session.execute(by_address).scalars()}
    more = False
    if "@" not in prefix:
        named, more = contacts.by_name(session, prefix, limit)
        found.update((contact.id, contact) for contact in named)
    listed = sorted(found.values(), key=lambda contact: contact.email)
    return listed[:limit], more or len(listed) > limit


@dataclass(frozen=True)
class BulkAction:
    """A status change applied to a selection; only messages in `applies_to` are touched
    (the same rule as automator.support's single-message action)."""

    name: str
    applies_to: tuple[str, ...]
    status: str
    values: dict[str, Any] = field(default_factory=dict)


BULK_ACTIONS = {
    "hold": BulkAction(HOLD.name, tuple(HOLD.applies_to), HOLD.to, {"hold_kind": HoldKind.BULK}),
    "cancel": BulkAction(CANCEL.name, tuple(CANCEL.applies_to), CANCEL.to),
}


@dataclass(frozen=True)
class Selection:
    """How many messages an action would touch now, and the newest of them: applying it
    later touches none queued after the count was shown."""

    count: int
    upto: int | None


def selection(session: Session, where: MessageFilter, action: BulkAction) -> Selection:
    conditions = [*_conditions(session, where), MESSAGES.c.status.in_(action.applies_to)]
    count, upto = session.execute(select(func.count(), func.max(MESSAGES.c.id)).where(*conditions)).one()
    return Selection(count, upto)


def already_done(session: Session, where: MessageFilter, action: BulkAction, upto: int) -> int:
    """How many messages of the selection, up to id `upto`, are where `action` leads already
    (whatever status the selection asked for: the held ones of a hold of the queued ones)."""
    conditions = [
        *_conditions(session, replace(where, status=None)),
        MESSAGES.c.id <= upto,
        MESSAGES.c.status == action.status,
    ]
    return session.execute(select(func.count()).where(*conditions)).scalar_one()


def apply(
    session: Session,
    where: MessageFilter,
    action: BulkAction,
    upto: int,
    reason: str,
    actor: str,
    now: datetime,
) -> int:
    """Apply `action` to the selection's messages up to id `upto`, with a history line and
    an audit entry for each; returns how many changed."""
    conditions = [
        *_conditions(session, where),
        MESSAGES.c.id <= upto,
        MESSAGES.c.status.in_(action.applies_to),
    ]
    ids = list(session.execute(select(MESSAGES.c.id).where(*conditions)).scalars())
    changed = 0
    for start in range(0, len(ids), 500):
        changed += _apply_chunk(session, ids[start : start + 500], action, reason, actor, now)
    return changed


def _apply_chunk(
    session: Session, ids: Sequence[int], action: BulkAction, reason: str, actor: str, now: datetime
) -> int:
    # The status is checked again in the UPDATE: a dispatcher may have claimed some meanwhile.
    rows = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(ids), MESSAGES.c.status.in_(action.applies_to))
        .values(status=action.status, **action.values)
        .returning(MESSAGES.c.id, MESSAGES.c.contact_id)
    ).all()
    if not rows:
        return 0
    session.execute(
        HISTORY.insert(),
        [
            {"message_id": id_, "at": now, "status": action.status, "reason": reason, "actor": actor}
            for id_, _ in rows
        ],
    )
    session.execute(
        AUDIT.insert(),
        [
            {
                "at": now,
                "actor": actor,
                "action": f"bulk {action.name}",
                "reason": reason,
                "message_id": id_,
                "contact_id": contact_id,
            }
            for id_, contact_id in rows
        ],
    )
    if action.status == Status.CANCELLED:  # a cancelled message never goes out: its pool code goes back
        coupons.return_to_pool(session, [id_ for id_, _ in rows])
    return len(rows)
