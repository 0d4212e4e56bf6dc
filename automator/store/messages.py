"""The message queue: dedupe-keyed inserts, status changes with history, and listings."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, String, and_, bindparam, func, literal, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from automator.errors import StatusChanged
from automator.status import Status, allowed
from automator.store import coupons, execute_many, insert, table
from automator.store.contacts import CONTACTS, Recipient
from automator.tables import Message, MessageContent, MessageHistory, UTCDateTime

MESSAGES = table(Message)
HISTORY = table(MessageHistory)
CONTENT = table(MessageContent)

STATUSES = tuple(Status)
OPEN_STATUSES = (Status.QUEUED, Status.HELD)


class _per_row(FunctionElement[str]):  # noqa: N801 (named as SQL functions are)
    """A column compared in each row found by id, never looked up through its own index:
    `+status` on SQLite, where unary plus changes no value. A batch's compare-and-set
    (`id IN (…) AND status = 'queued'`) would otherwise go through the status index, over
    every queued message, instead of to the batch's rows by id."""

    type = String()
    inherit_cache = True


@compiles(_per_row)
def _column(element: _per_row, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_per_row, "sqlite")
def _unindexed_column(element: _per_row, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


STATUS_PER_ROW = _per_row(MESSAGES.c.status)


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


def content(session: Session, message_id: int) -> Content:
    """A message's bodies (empty before it is rendered)."""
    row = session.execute(
        select(CONTENT.c.text_body, CONTENT.c.html_body).where(CONTENT.c.message_id == message_id)
    ).first()
    return Content(row.text_body, row.html_body) if row else Content("", "")


def bodies(session: Session, message_ids: Collection[int]) -> dict[int, Content]:
    """Several messages' bodies (empty before they are rendered)."""
    found = {message_id: Content("", "") for message_id in message_ids}
    if found:
        rows = session.execute(
            select(CONTENT.c.message_id, CONTENT.c.text_body, CONTENT.c.html_body).where(
                CONTENT.c.message_id.in_(list(found))
            )
        )
        found.update({message_id: Content(text, html) for message_id, text, html in rows.all()})
    return found


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
            .where(MESSAGES.c.id.in_(list(values)), STATUS_PER_ROW.in_(tuple(expected)))
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
    """History lines (message id, status, reason), all at `at`, in one statement."""
    execute_many(
        session,
        HISTORY.insert(),
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
        .where(HISTORY.c.message_id.in_(message_ids))
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


@dataclass(slots=True)
class Due:
    """A due message as the dispatcher reads it, with its contact: the columns its re-checks,
    the email and the outcome need, as plain values (no ORM objects to build and track).
    Its bodies are read once it is claimed (`bodies`)."""

    id: int
    rule_id: str
    contact_id: int
    email: str
    occurred_at: datetime
    event_id: int | None
    due_at: datetime
    expires_at: datetime
    skip_policies: bool
    attempts: int
    subject: str
    message_id: str
    contact: Recipient


DUE_COLUMNS = [MESSAGES.c[column.name] for column in fields(Due) if column.name != "contact"]
RECIPIENT_COLUMNS = [CONTACTS.c[column.name] for column in fields(Recipient) if column.name != "id"]


def due(session: Session, now: datetime, limit: int, lock: bool = False) -> list[Due]:
    """Queued messages whose send time has come, most important first.

    With `lock`, rows are locked FOR UPDATE SKIP LOCKED on PostgreSQL, so several daemons
    claim disjoint batches; SQLite ignores it (one daemon per SQLite file).
    """
    ids = _due_ids(session, now, limit, lock)
    if not ids:
        return []
    query = (
        select(*DUE_COLUMNS, *RECIPIENT_COLUMNS)
        .select_from(MESSAGES.outerjoin(CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id))
        .where(MESSAGES.c.id.in_(ids))
        .order_by(MESSAGES.c.priority.desc(), MESSAGES.c.send_at, MESSAGES.c.id)
    )
    return [_due(row) for row in session.execute(query).all()]


def _due_ids(session: Session, now: datetime, limit: int, lock: bool) -> list[int]:
    """The ids of the `limit` most important due messages, read from the (status,
    priority, send_at, id) index one priority at a time: the cost of a batch follows its
    size and the number of priorities, never the number of messages due. (One query
    ordered by priority, then send time, would sort every due message at each batch.)"""
    ids: list[int] = []
    level: int | None = None
    for _ in range(10_000):  # bounded: each pass moves to a lower priority
        highest = select(func.max(MESSAGES.c.priority)).where(MESSAGES.c.status == "queued")
        if level is not None:
            highest = highest.where(MESSAGES.c.priority < level)
        level = session.execute(highest).scalar()
        if level is None:
            break
        chosen = (
            select(MESSAGES.c.id)
            .where(MESSAGES.c.status == "queued", MESSAGES.c.priority == level, MESSAGES.c.send_at <= now)
            .order_by(MESSAGES.c.send_at, MESSAGES.c.id)
            .limit(limit - len(ids))
        )
        if lock:
            chosen = chosen.with_for_update(skip_locked=True)
        ids += session.execute(chosen).scalars()
        if len(ids) >= limit:
            break
    return ids


def _due(row: Row[Any]) -> Due:
    """A Due from a row of its columns followed by its contact's."""
    width = len(DUE_COLUMNS)
    values = (*row[:width], Recipient(row.contact_id, *row[width:]))
    return Due(*values)


def requeue_expired(session: Session, wall: datetime, reason: str) -> int:
    """Put back in the queue the messages whose lease ran out before `wall` (the real time,
    whatever time a tick acts as): their dispatcher stopped without recording an outcome."""
    return _requeue(session, and_(MESSAGES.c.lease_until < wall), wall, reason)


def requeue_claimed(session: Session, ids: Collection[int], owner: str, at: datetime, reason: str) -> int:
    """Put back in the queue those of these messages `owner` still holds in `sending`."""
    if not ids:
        return 0
    return _requeue(session, and_(MESSAGES.c.id.in_(ids), MESSAGES.c.claimed_by == owner), at, reason)


def requeue_daemons(session: Session, at: datetime, reason: str) -> int:
    """Put back every message a daemon left in `sending`, lease or not: for the one daemon
    a SQLite file allows, at start-up, when no other daemon can be sending. Claims of
    `automator tick` processes, which may be running, wait for their leases."""
    return _requeue(
        session, or_(MESSAGES.c.claimed_by.is_(None), MESSAGES.c.claimed_by.startswith(DAEMON)), at, reason
    )


DAEMON = "daemon:"  # how the claims of `automator run` begin (see Dispatcher.owner)


def _requeue(session: Session, which: ColumnElement[bool], at: datetime, reason: str) -> int:
    ids = list(
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.status == Status.SENDING, which)
            .values(status=Status.QUEUED, lease_until=None, claimed_by=None)
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    if ids:
        _record_many(session, ids, at, Status.QUEUED, literal(reason))
    return len(ids)


def extend_leases(session: Session, ids: Collection[int], owner: str, until: datetime) -> None:
    """Keep `owner`'s claims alive while it is still sending them."""
    if ids:
        session.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.id.in_(ids), MESSAGES.c.claimed_by == owner, MESSAGES.c.status == Status.SENDING
            )
            .values(lease_until=until)
        )


@dataclass
class QueueFilter:
    status: str | None = None
    rule: str | None = None
    email: str | None = None
    limit: int = 100


def listing(session: Session, where: QueueFilter) -> list[Message]:
    """Messages matching a filter, newest first."""
    query = select(Message)
    if where.status:
        query = query.where(MESSAGES.c.status == where.status)
    if where.rule:
        query = query.where(MESSAGES.c.rule_id == where.rule)
    if where.email:  # through the contact's index (see console._to_address_starting)
        contact = select(CONTACTS.c.id).where(CONTACTS.c.email == where.email.strip().lower())
        query = query.where(MESSAGES.c.contact_id.in_(contact))
    query = query.order_by(MESSAGES.c.created_at.desc(), MESSAGES.c.id.desc()).limit(where.limit)
    return list(session.execute(query).scalars())


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


def sent_times(
    session: Session, contact_ids: set[int], since: datetime, now: datetime
) -> dict[int, list[datetime]]:
    """Per contact, when their messages were sent after `since` (the frequency-cap window);
    a message being sent right now counts as sent now.

    Only a sent message has a `sent_at`, so the (contact, sent_at) index answers the first
    query alone: asked for the status too, SQLite went through the status index, over every
    message ever sent."""
    found: dict[int, list[datetime]] = {}
    if not contact_ids:
        return found
    sent = session.execute(
        select(MESSAGES.c.contact_id, MESSAGES.c.sent_at).where(
            MESSAGES.c.contact_id.in_(contact_ids), MESSAGES.c.sent_at > since
        )
    )
    sending = session.execute(
        select(MESSAGES.c.contact_id).where(
            MESSAGES.c.status == Status.SENDING, MESSAGES.c.contact_id.in_(contact_ids)
        )
    )
    for contact_id, sent_at in sent:
        found.setdefault(contact_id, []).append(sent_at)
    for contact_id in sending.scalars():
        found.setdefault(contact_id, []).append(now)
    return found


def claim(session: Session, due: list[Due], now: datetime, owner: str, lease_until: datetime) -> list[Due]:
    """Mark messages `sending` under `owner`'s lease (one more attempt each), with a history
    line; returns the ones it took.

    Only a message still `queued` is taken, in the UPDATE itself: another dispatcher (a
    tick beside the daemon) or a person may have changed some since they were read, and
    only what this claim changed may be sent."""
    if not due:
        return []
    taken = set(
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_([message.id for message in due]), STATUS_PER_ROW == Status.QUEUED)
            .values(
                status=Status.SENDING,
                lease_until=lease_until,
                claimed_by=owner,
                attempts=MESSAGES.c.attempts + 1,
            )
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    claimed = [message for message in due if message.id in taken]
    for message in claimed:
        message.attempts += 1
    _record_many(session, list(taken), now, Status.SENDING, literal("sending"))
    return claimed


def mark_sent(session: Session, delivered: list[Due], now: datetime) -> list[int]:
    """Record messages as sent, with a history line naming the address; returns the ids
    recorded. One whose lease ran out and was put back in the queue meanwhile is recorded
    too (it did go out; sending it again would be the duplicate); one that a person or
    another dispatcher has ended since is left as it is."""
    if not delivered:
        return []
    ids = list(
        session.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.id.in_([message.id for message in delivered]),
                STATUS_PER_ROW.in_((Status.SENDING, Status.QUEUED)),
            )
            .values(status=Status.SENT, sent_at=now, lease_until=None, last_error=None)
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    _record_many(session, ids, now, Status.SENT, literal("sent to ") + MESSAGES.c.email)
    return ids


def _record_many(
    session: Session, message_ids: list[int], at: datetime, status: str, reason: ColumnElement[str]
) -> None:
    """One history line per message; `reason` may use the message's columns."""
    if not message_ids:
        return
    lines = select(
        MESSAGES.c.id,
        literal(at, UTCDateTime()),
        literal(status),
        reason,
        literal("automator"),
    ).where(MESSAGES.c.id.in_(message_ids))
    session.execute(HISTORY.insert().from_select(["message_id", "at", "status", "reason", "actor"], lines))
