"""The dispatcher's queries: the due messages with their contacts, claims under a lease,
the outcome `sent`, and the claims put back in the queue when their dispatcher stopped
without recording an outcome (a lease run out, a daemon that died).

Status changes that people make, and the history they write, are `messages`' job; these
are the batch forms a dispatcher runs, a few statements whatever the batch's size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    and_,
    bindparam,
    func,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from automator.status import Status
from automator.store import Store, locks
from automator.store.bulk import add_rows
from automator.store.contacts import CONTACTS, Recipient
from automator.store.messages import HISTORY, MESSAGES, STATUS_PER_ROW
from automator.store.statements import listed, one_of
from automator.tables import UTCDateTime


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
    step: int
    variant: str | None
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
    return [_due(row) for row in session.execute(_DUE, {"ids": ids}).all()]


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
        ids += session.execute(chosen).scalars().all()
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
    return _requeue(session, and_(one_of(MESSAGES.c.id, ids), MESSAGES.c.claimed_by == owner), at, reason)


def requeue_daemons(session: Session, at: datetime, reason: str) -> int:
    """Put back every message a daemon left in `sending`, lease or not: for the one daemon
    a SQLite file allows, at start-up, when no other daemon can be sending. Claims of
    `automator tick` processes, which may be running, wait for their leases."""
    return _requeue(
        session, or_(MESSAGES.c.claimed_by.is_(None), MESSAGES.c.claimed_by.startswith(DAEMON)), at, reason
    )


DAEMON = "daemon:"  # how the claims of `automator run` begin (see Dispatcher.owner)


# On PostgreSQL a dispatcher holds an advisory lock named after its claims' owner for as long
# as it claims and sends (`owning`). The server lets go of it when the dispatcher's connection
# closes, however its process ended (SIGKILL, a lost machine: once TCP gives up): the claims
# of an owner whose lock is free have no one left to record their outcome. Several daemons on
# one database thus put back at once what a dead one left, and never what a live one sends.


@contextmanager
def owning(store: Store, owner: str) -> Iterator[OwnerLock]:
    """Hold `owner`'s lock, on a connection of its own, while the block runs (PostgreSQL; on
    SQLite nothing: a daemon there is alone, its claims left by a crash go back at start-up)."""
    lock = OwnerLock(store, owner)
    lock.take()
    try:
        yield lock
    finally:
        lock.release()


class OwnerLock:
    """`owner`'s lock on PostgreSQL, held on a connection of its own (nothing on SQLite).

    The server closes that connection, and lets the lock go, when the process ends, but also
    under a live process: a DBA's pg_terminate_backend, idle_session_timeout, a restart, a
    firewall dropping an idle connection. `keep` finds that out and takes the lock again,
    so that a process that lives on is seen alive again. Its methods may be called from
    different threads, one at a time."""

    def __init__(self, store: Store, owner: str) -> None:
        self.engine = store.engine if store.engine.dialect.name == "postgresql" else None
        self.key = locks.owner(owner)
        self.connection: Connection | None = None
        self.turn = threading.Lock()

    def take(self) -> None:
        """Take the lock on a new connection, waiting for it if need be."""
        if self.engine is None:
            return
        with self.turn:
            self.connection = self._locked(self.engine, func.pg_advisory_lock)

    def keep(self) -> bool:
        """Make sure the lock is held: a round trip on its connection, and the lock taken
        again on a new one if the server closed that (without waiting: a process that asks
        whether the owner is gone holds it for a moment; the next `keep` tries again).
        Whether it was taken again. Raises what the database raises while it is down."""
        if self.engine is None:
            return False
        with self.turn:
            if self.connection is not None:
                try:
                    self.connection.execute(select(1))
                    self.connection.commit()
                    return False
                except DBAPIError:
                    self.connection.invalidate()  # closed, so a lock it might hold goes with it
                    self.connection.close()
                    self.connection = None
            self.connection = self._locked(self.engine, func.pg_try_advisory_lock)
            return self.connection is not None

    def _locked(self, engine: Engine, lock: Callable[[int], Any]) -> Connection | None:
        """A new connection on which `lock` (pg_advisory_lock or pg_try_advisory_lock) took
        the lock; None if it did not (pg_try_advisory_lock said false)."""
        connection = engine.connect()
        try:
            taken = connection.execute(select(lock(self.key))).scalar()
            connection.commit()
        except Exception:
            connection.close()
            raise
        if taken is False:
            connection.close()
            return None
        return connection

    def release(self) -> None:
        with self.turn:
            connection, self.connection = self.connection, None
            if connection is None:
                return
            try:
                connection.execute(select(func.pg_advisory_unlock(self.key)))
                connection.commit()
            except Exception:
                connection.invalidate()  # closed, so the lock goes with it
            connection.close()


# On PostgreSQL, claims of the same contacts take turns: a claim holds its contacts' locks
# until it commits, and the claim after it finds their messages `sending` and counts them
# for the frequency cap. (Each would see none of the other's otherwise, and both could
# send.) A claim does not wait for a lock another claim holds: it leaves that contact's
# messages in the queue for its next claim, and claims the others. Waiting would hold its
# whole batch for the other's whole claim, tens of milliseconds, while the two daemons'
# batches often share a contact or two. Only a batch whose contacts are all held elsewhere
# waits, so that a dispatcher with nothing else to claim does not claim again and again
# meanwhile. On SQLite the claim holds the write lock already.
_CONTACT_KEYS = func.unnest(bindparam("keys", type_=ARRAY(Integer))).table_valued("key").render_derived()
_TRY_LOCK_CONTACTS = (
    select(_CONTACT_KEYS.c.key)
    .select_from(_CONTACT_KEYS)
    .where(~func.pg_try_advisory_xact_lock(locks.CONTACTS, _CONTACT_KEYS.c.key))
)
_LOCK_CONTACTS = select(
    func.count(func.pg_advisory_xact_lock(locks.CONTACTS, _CONTACT_KEYS.c.key))
).select_from(_CONTACT_KEYS)


def without_parallel_workers(session: Session) -> None:
    """On PostgreSQL, the statements of this transaction (a claim's) run in its own server
    process, without parallel workers.

    A claim reads a few hundred rows through indexes, but the planner prices a lookup by
    hundreds of ids high enough to start workers for it (the frequency cap's read of the
    batch's contacts, often): starting them costs tens of milliseconds for a millisecond's
    work, and takes cores from the other dispatchers. A tick's lookups keep their workers:
    over a first tick's millions of events, they may pay."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")


def lock_contacts(session: Session, contact_ids: Collection[int]) -> set[int]:
    """Hold, until this transaction ends, the claim locks of these contacts (PostgreSQL), as
    many as are free; returns the contacts whose lock another claim holds (see above).
    When every one is held elsewhere, waits for them all instead, taken in one order by
    every claim so that two claims never wait for each other."""
    if not contact_ids or session.get_bind().dialect.name != "postgresql":
        return set()
    keys = sorted({_key(contact_id) for contact_id in contact_ids})
    busy = set(session.execute(_TRY_LOCK_CONTACTS, {"keys": keys}).scalars())
    if len(busy) < len(keys):
        return {contact_id for contact_id in contact_ids if _key(contact_id) in busy}
    session.execute(_LOCK_CONTACTS, {"keys": keys})
    return set()


def _key(contact_id: int) -> int:
    return contact_id % 2_147_483_647


def requeue_orphans(
    session: Session, owner: str, at: datetime, reason: str, leases_ending_before: datetime
) -> int:
    """Put back in the queue, on PostgreSQL, the messages in `sending` whose owner (another
    than `owner`) holds no lock and whose lease ends before `leases_ending_before`: their
    owner is gone, and has not renewed them since. Returns how many.

    A free lock alone is no proof: it also goes free when the connection holding it is
    closed under a live owner, which goes on sending and renewing them. The owner's lock is
    tried for this transaction only: two dispatchers looking at once cannot both get it, and
    the owner, gone, never asks for it again."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    owners = session.execute(
        select(MESSAGES.c.claimed_by)
        .where(MESSAGES.c.status == Status.SENDING, MESSAGES.c.claimed_by != owner)
        .distinct()
    ).scalars()
    gone = [
        other
        for other in owners
        if session.execute(select(func.pg_try_advisory_xact_lock(locks.owner(other)))).scalar()
    ]
    if not gone:
        return 0
    silent = and_(MESSAGES.c.claimed_by.in_(gone), MESSAGES.c.lease_until < leases_ending_before)
    return _requeue(session, silent, at, reason)


def _requeue(session: Session, which: ColumnElement[bool], at: datetime, reason: str) -> int:
    ids = list(
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.status == Status.SENDING, which)
            .values(status=Status.QUEUED, lease_until=None, claimed_by=None)
            .returning(MESSAGES.c.id)
        ).scalars()
    )
    _history(session, [(message_id, reason) for message_id in ids], at, Status.QUEUED)
    return len(ids)


def extend_leases(session: Session, ids: Collection[int], owner: str, until: datetime) -> None:
    """Keep `owner`'s claims alive while it is still sending them."""
    if ids:
        session.execute(
            update(MESSAGES)
            .where(
                one_of(MESSAGES.c.id, ids),
                MESSAGES.c.claimed_by == owner,
                MESSAGES.c.status == Status.SENDING,
            )
            .values(lease_until=until)
        )


# The statements a dispatcher runs for every batch or group of outcomes, built once: what
# changes from one call to the next is bound (`ids`: the batch's ids, as one parameter), so
# a call only binds its values, and each statement is one SQL text whatever the batch's size.
_IDS = listed("ids", MESSAGES.c.id)
_CONTACT_IDS = listed("contact_ids", MESSAGES.c.contact_id)
_DUE = (
    select(*DUE_COLUMNS, *RECIPIENT_COLUMNS)
    .select_from(MESSAGES.outerjoin(CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id))
    .where(one_of(MESSAGES.c.id, _IDS))
    .order_by(MESSAGES.c.priority.desc(), MESSAGES.c.send_at, MESSAGES.c.id)
)
# A contact's sends in the cap's window and its messages being sent, in one statement: one
# snapshot, so that a message recorded `sent` meanwhile is in one part or the other, never
# in neither (PostgreSQL reads each statement as of its start). Each part goes through its
# own index; a message being sent has no `sent_at` yet.
_SENT_OR_SENDING = union_all(
    select(MESSAGES.c.contact_id, MESSAGES.c.sent_at).where(
        one_of(MESSAGES.c.contact_id, _CONTACT_IDS),
        MESSAGES.c.sent_at > bindparam("since", type_=UTCDateTime()),
        MESSAGES.c.status != Status.SKIPPED,  # its `sent_at` is when it was skipped
    ),
    select(MESSAGES.c.contact_id, MESSAGES.c.sent_at).where(
        MESSAGES.c.status == Status.SENDING, one_of(MESSAGES.c.contact_id, _CONTACT_IDS)
    ),
)
_CLAIM = (
    update(MESSAGES)
    .where(one_of(MESSAGES.c.id, _IDS), STATUS_PER_ROW == Status.QUEUED)
    .values(
        status=Status.SENDING,
        lease_until=bindparam("lease", type_=UTCDateTime()),
        claimed_by=bindparam("owner"),
        attempts=MESSAGES.c.attempts + 1,
    )
    .returning(MESSAGES.c.id)
)
_SENT = (
    update(MESSAGES)
    .where(one_of(MESSAGES.c.id, _IDS), one_of(STATUS_PER_ROW, (Status.SENDING, Status.QUEUED)))
    .values(
        status=Status.SENT,
        sent_at=bindparam("sent_time", type_=UTCDateTime()),
        lease_until=None,
        last_error=None,
    )
    .returning(MESSAGES.c.id, MESSAGES.c.email)
)


def sent_times(
    session: Session, contact_ids: set[int], since: datetime, now: datetime
) -> dict[int, list[datetime]]:
    """Per contact, when their messages were sent after `since` (the frequency-cap window);
    a message being sent right now counts as sent now.

    Only a sent message has a `sent_at`, so the (contact, sent_at) index answers the first
    part alone: asked for the status too, SQLite went through the status index, over every
    message ever sent."""
    found: dict[int, list[datetime]] = {}
    if not contact_ids:
        return found
    rows = session.execute(_SENT_OR_SENDING, {"contact_ids": list(contact_ids), "since": since})
    for contact_id, sent_at in rows.all():
        found.setdefault(contact_id, []).append(sent_at or now)
    return found


def claim(session: Session, due: list[Due], now: datetime, owner: str, lease_until: datetime) -> list[Due]:
    """Mark messages `sending` under `owner`'s lease (one more attempt each), with a history
    line; returns the ones it took.

    Only a message still `queued` is taken, in the UPDATE itself: another dispatcher (a
    tick beside the daemon) or a person may have changed some since they were read, and
    only what this claim changed may be sent."""
    if not due:
        return []
    values = {"ids": [message.id for message in due], "lease": lease_until, "owner": owner}
    taken = set(session.execute(_CLAIM, values).scalars().all())
    claimed = [message for message in due if message.id in taken]
    for message in claimed:
        message.attempts += 1
    _history(session, [(message.id, "sending") for message in claimed], now, Status.SENDING)
    return claimed


def mark_sent(session: Session, delivered: list[Due], now: datetime) -> list[int]:
    """Record messages as sent, with a history line naming the address; returns the ids
    recorded. One whose lease ran out and was put back in the queue meanwhile is recorded
    too (it did go out; sending it again would be the duplicate); one that a person or
    another dispatcher has ended since is left as it is."""
    if not delivered:
        return []
    values = {"ids": [message.id for message in delivered], "sent_time": now}
    rows = session.execute(_SENT, values).all()
    _history(session, [(message_id, f"sent to {email}") for message_id, email in rows], now, Status.SENT)
    return [message_id for message_id, _ in rows]


def _history(session: Session, lines: list[tuple[int, str]], at: datetime, status: str) -> None:
    """One history line per (message id, reason), all at `at` in `status`."""
    add_rows(
        session,
        HISTORY,
        [
            {"message_id": message_id, "at": at, "status": status, "reason": reason, "actor": "automator"}
            for message_id, reason in lines
        ],
    )
