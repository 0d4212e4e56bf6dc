"""The message queue: dedupe-keyed inserts, contents, status changes with history, and
listings. What a dispatcher runs on a batch (due messages, claims, leases) is in `claims`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, type_coerce, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import NullType
from sqlmodel import Session

from automator.errors import StatusChanged
from automator.status import Status, allowed
from automator.store import coupons, insert, table
from automator.store.bulk import add_rows
from automator.store.contacts import CONTACTS
from automator.store.statements import listed, one_of, per_row
from automator.tables import Message, MessageContent, MessageHistory

MESSAGES = table(Message)
HISTORY = table(MessageHistory)
CONTENT = table(MessageContent)

STATUSES = tuple(Status)
OPEN_STATUSES = (Status.QUEUED, Status.HELD)


# A batch's compare-and-set (`id IN (…) AND status = 'queued'`) would otherwise go through
# the status index, over every queued message, instead of to the batch's rows by id.
STATUS_PER_ROW = per_row(MESSAGES.c.status)


def enqueue(
    session: Session, values: dict[str, Any], reason: str, text: str = "", html: str = ""
) -> int | None:
    """Insert a message and its content unless its (rule, contact, occurrence) exists;
    returns the new id or None."""
    statement = (
        insert(session, MESSAGES)
        .on_conflict_do_nothing(index_elements=["rule_id", "contact_id", "occurrence"])
        .returning(MESSAGES.c.id)
    )
    message_id = session.execute(statement, [values]).scalar()
    if message_id is not None:
        set_content(session, message_id, text, html)
        record(session, message_id, values["created_at"], values["status"], reason)
    return message_id


@dataclass(frozen=True, slots=True)
class Content:
    """A message's rendered bodies."""

    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Packed:
    """A message's bodies as stored: packed on SQLite (bytes), or text."""

    text: bytes | str
    html: bytes | str


def content(session: Session, message_id: int) -> Content:
    """A message's bodies (empty before it is rendered)."""
    row = session.execute(
        select(CONTENT.c.text_body, CONTENT.c.html_body).where(CONTENT.c.message_id == message_id)
    ).first()
    return Content(row.text_body, row.html_body) if row else Content("", "")


def bodies(session: Session, message_ids: Collection[int]) -> dict[int, Packed]:
    """Several messages' bodies as stored (empty before they are rendered), for the
    dispatcher's claim: it reads them in its transaction, and unpacks them where it builds
    the emails, outside it (the write lock is held no longer than the claim needs)."""
    found = {message_id: Packed("", "") for message_id in message_ids}
    if found:
        rows = session.execute(_BODIES, {"ids": list(found)})
        found.update({message_id: Packed(text, html) for message_id, text, html in rows.all()})
    return found


_BODIES = select(
    CONTENT.c.message_id,
    type_coerce(CONTENT.c.text_body, NullType()),  # as stored: unpacked by `letters.build_each`
    type_coerce(CONTENT.c.html_body, NullType()),
).where(one_of(CONTENT.c.message_id, listed("ids", CONTENT.c.message_id)))


def set_content(session: Session, message_id: int, text: str, html: str) -> None:
    """Store a message's bodies, replacing what it had."""
    statement = insert(session, CONTENT).values(message_id=message_id, text_body=text, html_body=html)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["message_id"],
            set_={"text_body": statement.excluded.text_body, "html_body": statement.excluded.html_body},
        )
    )


def record(
    session: Session,
    message_id: int,
    at: datetime,
    status: str,
    reason: str,
    actor: str = "automator",
) -> None:
    """Append one line to a message's history."""
    session.execute(
        HISTORY.insert().values(message_id=message_id, at=at, status=status, reason=reason, actor=actor)
    )


def change(
    session: Session,
    message: Message,
    status: str,
    at: datetime,
    reason: str,
    actor: str = "automator",
    *,
    expected: Collection[str] | None = None,
    **values: Any,
) -> None:
    """Set a message's status (and other columns) and record why, if it is still in one of
    the `expected` statuses (by default, the status it was read in).

    A compare-and-set: of a dispatcher and a person changing one message at the same
    moment, the one who comes second gets StatusChanged, saying what happened first,
    instead of undoing it (a cancel that lands on a message being sent, a claim of a
    message just cancelled)."""
    before = (message.status,) if expected is None else tuple(expected)
    if not all(allowed(old, status) for old in before):
        raise ValueError(f"a message cannot go from {' or '.join(before)} to {status}")
    assert message.id is not None
    result = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == message.id, MESSAGES.c.status.in_(before))
        .values(status=status, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StatusChanged(message.id, *last_change(session, message.id))
    for key, value in {"status": status, **values}.items():
        # Already written by the UPDATE above: keep the ORM from writing it a second time.
        set_committed_value(message, key, value)
    record(session, message.id, at, status, reason, actor)
    if status == Status.CANCELLED:
        coupons.return_to_pool(session, [message.id])  # a cancelled message never goes out


@dataclass(frozen=True, slots=True)
class Change:
    """One message's move to `status` and why; `values` are the other columns it sets."""

    message_id: int
    status: Status
    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)


def change_many(
    session: Session,
    changes: Iterable[Change],
    at: datetime,
    expected: Collection[str],
    actor: str = "automator",
) -> list[Change]:
    """`change` for many messages at once, each a compare-and-set on the `expected`
    statuses: one UPDATE … RETURNING per status, then the values that differ between
    messages in one executemany, then one INSERT of all their history lines. Returns the
    changes made; a message no longer in an expected status is left as it is."""
    by_status: dict[Status, list[Change]] = {}
    for one in changes:
        by_status.setdefault(one.status, []).append(one)
    made: list[Change] = []
    for status, group in by_status.items():
        if not all(allowed(old, status) for old in expected):
            raise ValueError(f"a message cannot go from {' or '.join(expected)} to {status}")
        values = {one.message_id: one.values for one in group}
        changed = set(_update_each(session, values, expected, status=status))
        made += [one for one in group if one.message_id in changed]
    record_each(session, [(one.message_id, one.status, one.reason) for one in made], at, actor)
    cancelled = [one.message_id for one in made if one.status == Status.CANCELLED]
    if cancelled:
        coupons.return_to_pool(session, cancelled)  # a cancelled message never goes out
    return made


def _update_each(
    session: Session, values: Mapping[int, Mapping[str, Any]], expected: Collection[str], **shared: Any
) -> list[int]:
    """Set `shared` and each message's own `values` on the messages still in an `expected`
    status; returns their ids.

    The compare-and-set is one UPDATE … RETURNING for all of them; what differs between
    them (a send time each) follows in one executemany, for the rows it took: they are this
    transaction's from that UPDATE on (SQLite's write lock, PostgreSQL's row locks)."""
    if not values:
        return []
    common = {**shared, **_shared_values(values.values())}
    changed = list(
        session.execute(
            update(MESSAGES)
            .where(one_of(MESSAGES.c.id, values), one_of(STATUS_PER_ROW, expected))
            .values(**common)
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    own: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for message_id in changed:
        row = {name: value for name, value in values[message_id].items() if name not in common}
        if row:
            own.setdefault(tuple(sorted(row)), []).append({"row_id": message_id, **row})
    for names, rows in own.items():
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("row_id"))
            .values({name: bindparam(f"new_{name}", type_=MESSAGES.c[name].type) for name in names})
        )
        params = [{"row_id": row["row_id"], **{f"new_{name}": row[name] for name in names}} for row in rows]
        session.execute(statement, params)
    return changed


def _shared_values(values: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The columns every message sets, to the same value."""
    rows = list(values)
    shared = dict(rows[0])
    for row in rows[1:]:
        shared = {name: value for name, value in shared.items() if name in row and row[name] == value}
    return shared


def record_each(
    session: Session, lines: list[tuple[int, str, str]], at: datetime, actor: str = "automator"
) -> None:
    """History lines (message id, status, reason), all at `at`, at once (`bulk.add_rows`)."""
    add_rows(
        session,
        HISTORY,
        [
            {"message_id": message_id, "at": at, "status": status, "reason": reason, "actor": actor}
            for message_id, status, reason in lines
        ],
    )


def reschedule_many(session: Session, send_at: Mapping[int, datetime]) -> list[int]:
    """Move queued messages' send times without history lines (repeated, identical waits);
    returns the ids moved (one no longer queued is left as it is)."""
    moves = {message_id: {"send_at": at} for message_id, at in send_at.items()}
    return _update_each(session, moves, (Status.QUEUED,), status=Status.QUEUED)


def last_reasons(session: Session, message_ids: Collection[int]) -> dict[int, str]:
    """Each message's latest history line's reason."""
    if not message_ids:
        return {}
    rows = session.execute(
        select(HISTORY.c.message_id, HISTORY.c.reason)
        .where(one_of(HISTORY.c.message_id, message_ids))
        .order_by(HISTORY.c.at, HISTORY.c.id)
    )
    return {message_id: reason for message_id, reason in rows}  # the last of each wins


def last_change(session: Session, message_id: int) -> tuple[str, datetime | None]:
    """A message's status now, and when it entered it (from its history)."""
    current = session.execute(select(MESSAGES.c.status).where(MESSAGES.c.id == message_id)).scalar_one()
    at = session.execute(
        select(func.max(HISTORY.c.at)).where(HISTORY.c.message_id == message_id, HISTORY.c.status == current)
    ).scalar()
    return current, at


def get(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def known(session: Session, message_id: int) -> Message:
    """A message known to exist (one being dispatched), as it is stored now."""
    message = session.get(Message, message_id)
    assert message is not None, f"message {message_id} vanished"
    return message


def history(session: Session, message_id: int) -> list[MessageHistory]:
    return list(
        session.execute(
            select(MessageHistory)
            .where(HISTORY.c.message_id == message_id)
            .order_by(HISTORY.c.at, HISTORY.c.id)
        ).scalars()
    )


@dataclass
class QueueFilter:
    status: str | None = None
    rule: str | None = None
    email: str | None = None
    limit: int = 100


def listing(session: Session, where: QueueFilter) -> list[Message]:
    """Messages matching a filter, newest first."""
    query = _matching(select(Message), where)
    query = query.order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc()).limit(where.limit)
    return list(session.execute(query).scalars())


def count_matching(session: Session, where: QueueFilter, up_to: int) -> int:
    """How many messages match a filter, counted up to `up_to` at most: a listing says how
    many it left out without counting a table of millions."""
    found = _matching(select(MESSAGES.c.id), where).limit(up_to).subquery()
    return session.execute(select(func.count()).select_from(found)).scalar() or 0


def _matching(query: Select[Any], where: QueueFilter) -> Select[Any]:
    if where.status:
        query = query.where(MESSAGES.c.status == where.status)
    if where.rule:
        query = query.where(MESSAGES.c.rule_id == where.rule)
    if where.email:  # through the contact's index (see console._to_address_starting)
        contact = select(CONTACTS.c.id).where(CONTACTS.c.email == where.email.strip().lower())
        query = query.where(MESSAGES.c.contact_id.in_(contact))
    return query


def waiting(session: Session, rule_id: str, now: datetime) -> int:
    """Queued messages of a rule whose send time is still ahead."""
    return (
        session.execute(
            select(func.count()).where(
                MESSAGES.c.rule_id == rule_id,
                MESSAGES.c.status == "queued",
                MESSAGES.c.send_at > now,
            )
        ).scalar()
        or 0
    )


def for_contact(session: Session, contact_id: int) -> list[Message]:
    return list(
        session.execute(
            select(Message)
            .where(MESSAGES.c.contact_id == contact_id)
            .order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc())
        ).scalars()
    )


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(MESSAGES.c.status, func.count()).group_by(MESSAGES.c.status))
    found: dict[str, int] = {status: count for status, count in rows}
    return {status: found[status] for status in STATUSES if status in found}


def oldest_waiting(session: Session) -> Message | None:
    """The queued or held message that has waited longest past its send time."""
    return (
        session.execute(
            select(Message).where(MESSAGES.c.status.in_(OPEN_STATUSES)).order_by(MESSAGES.c.send_at).limit(1)
        )
        .scalars()
        .first()
    )
