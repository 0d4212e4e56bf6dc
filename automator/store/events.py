"""Events: idempotent inserts and the journey moves they cause."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select, update
from sqlmodel import Session

from automator.journey import Journey
from automator.staged import EventCopy, EventData, event_copy
from automator.store import Store, bulk, contacts, execute_many, insert, staging, suppressions, table
from automator.store.statements import listed, one_of
from automator.tables import Contact, Event

EVENTS = table(Event)
CONTACTS = table(Contact)


Batch = list[EventData] | EventCopy  # an import's batch, as the import wrote it


def add(session: Session, records: list[EventData], journey: Journey, now: datetime) -> int:
    """Store events once per key (re-imports are no-ops) and apply their journey moves.

    Returns how many events were new.
    """
    ids = contacts.ensure(session, sorted({record.email for record in records}), now, journey.first_stage)
    rows: list[dict[str, Any]] = [
        {
            "key": record.key,
            "contact_id": ids[record.email],
            "type": record.type,
            "at": record.at,
            "properties": record.properties,
            "received_at": now,
        }
        for record in records
    ]
    statement = insert(session, EVENTS).on_conflict_do_nothing(index_elements=["key"])
    new_keys = set(session.execute(statement.returning(EVENTS.c.key), rows).scalars())
    # The first row of a key is the one stored; a repeated key in the same file moves nobody.
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["key"], row)
    moving = [row for key, row in first.items() if key in new_keys and row["type"] in journey.moves]
    _apply_moves(session, moving, journey)
    return len(new_keys)


@contextmanager
def loader(
    store: Store, journey: Journey, now: datetime, announce: Callable[[str], None] = bulk.unannounced
) -> Iterator[Callable[[Batch], int]]:
    """`bulk_add` for each batch of an import: each in a transaction of its own, or, into an
    empty event table, all in one, with its indexes and those of the stage changes the
    events' moves record built at its end (`bulk.loading`, which `announce`s them).
    Returns how many of a batch's events were new."""
    with bulk.loading(store.engine, EVENTS, contacts.STAGES, announce=announce) as session:
        if session is not None:
            yield lambda batch: bulk_add(session, batch, journey, now)
            return

        def add_batch(batch: Batch) -> int:
            with store.transaction() as own:
                return bulk_add(own, batch, journey, now)

        yield add_batch


def batch_size() -> int:
    """Events per `bulk_add`, the same on both stores: a batch's journey moves are made in
    the events' order, after those of the batches before it (`_apply_moves`), so where a
    batch ends shows in the stage changes, and the stores must store the same."""
    return 10_000


def bulk_add(session: Session, records: Batch, journey: Journey, now: datetime) -> int:
    """`add` for an import's batch, in a write transaction (`loader`): on SQLite the keys
    already stored are looked up first and only the new events inserted, in one executemany
    (the transaction holds the write lock, so the lookup stays true); on PostgreSQL they go
    through a staging table (`staging`), copied as the import wrote them (`EventCopy`).

    Returns how many events were new."""
    if session.get_bind().dialect.name == "postgresql":
        batch = records if isinstance(records, EventCopy) else event_copy(records)
        new, created = staging.copy_events(session, batch, now, journey)
        suppressions.suppress_returning(session, created, now)
        return new
    assert isinstance(records, list), "an EventCopy is for PostgreSQL"
    ids = contacts.ensure(session, sorted({record.email for record in records}), now, journey.first_stage)
    first: dict[str, EventData] = {}
    for record in records:
        first.setdefault(record.key, record)  # the first row of a key is the one stored
    known = _stored_keys(session, list(first))
    rows = [
        {
            "key": key,
            "contact_id": ids[record.email],
            "type": record.type,
            "at": record.at,
            "properties": record.properties,
            "received_at": now,
        }
        for key, record in first.items()
        if key not in known
    ]
    execute_many(session, insert(session, EVENTS).on_conflict_do_nothing(index_elements=["key"]), rows)
    _apply_moves(session, [row for row in rows if row["type"] in journey.moves], journey)
    return len(rows)


def _stored_keys(session: Session, keys: list[str]) -> set[str]:
    found = session.execute(select(EVENTS.c.key).where(one_of(EVENTS.c.key, keys)))
    return set(found.scalars().all())


def _apply_moves(session: Session, rows: list[dict[str, Any]], journey: Journey) -> None:
    """Move each contact forward along the journey, in event order, recording every change."""
    if not rows:
        return
    stages = dict(
        session.execute(
            select(CONTACTS.c.id, CONTACTS.c.stage).where(
                one_of(CONTACTS.c.id, {row["contact_id"] for row in rows})
            )
        ).all()
    )
    changes, final = [], {}
    for row in sorted(rows, key=lambda row: (row["at"], row["key"])):
        current = stages[row["contact_id"]]
        target = journey.move_for(row["type"], current)
        if target is not None:
            changes.append(
                {
                    "contact_id": row["contact_id"],
                    "from_stage": current,
                    "to_stage": target,
                    "at": row["at"],
                    "cause": f"event {row['type']} ({row['key']})",
                }
            )
            stages[row["contact_id"]] = target
            final[row["contact_id"]] = (target, row["at"])
    if not changes:
        return
    if session.get_bind().dialect.name == "postgresql":
        staging.move_contacts(session, changes, final)
    else:
        execute_many(session, contacts.STAGES.insert(), changes)
        session.execute(
            update(CONTACTS)
            .where(CONTACTS.c.id == bindparam("cid"))
            .values(stage=bindparam("new_stage"), stage_entered_at=bindparam("entered")),
            [{"cid": cid, "new_stage": stage, "entered": at} for cid, (stage, at) in final.items()],
        )


def for_contact(session: Session, contact_id: int, limit: int = 100) -> list[Event]:
    """A contact's events, newest first."""
    return list(
        session.execute(
            select(Event)
            .where(EVENTS.c.contact_id == contact_id)
            .order_by(EVENTS.c.at.desc(), EVENTS.c.id.desc())
            .limit(limit)
        ).scalars()
    )


def latest(session: Session, contact_id: int, event_type: str, now: datetime) -> Event | None:
    """The contact's newest event of a type that happened by `now`."""
    return (
        session.execute(
            select(Event)
            .where(EVENTS.c.contact_id == contact_id, EVENTS.c.type == event_type, EVENTS.c.at <= now)
            .order_by(EVENTS.c.at.desc(), EVENTS.c.id.desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def properties_of(session: Session, event_id: int) -> dict[str, Any]:
    """An event's properties ({} when the event is gone)."""
    event = session.get(Event, event_id)
    return event.properties if event else {}


@dataclass(frozen=True, slots=True)
class Seen:
    """An event as the dispatcher's re-checks read it: plain values, no ORM object, and of
    its properties only the ones a rule groups events by (`latest_per`), which the database
    extracts (their values as text, as the candidate lookups compare them): a batch reads
    many events, and decoding each one's JSON cost more than the rest of its row."""

    id: int
    contact_id: int
    type: str
    at: datetime
    key: str
    groups: dict[str, Any]  # group property -> its value (None when the event lacks it)


def _seen_columns(groups: Collection[str]) -> list[Any]:
    return [
        EVENTS.c.id,
        EVENTS.c.contact_id,
        EVENTS.c.type,
        EVENTS.c.at,
        EVENTS.c.key,
        *(EVENTS.c.properties[group].as_string() for group in groups),
    ]


def _seen(row: Any, groups: tuple[str, ...]) -> Seen:
    values = dict(zip(groups, row[5:], strict=True)) if groups else {}
    return Seen(row[0], row[1], row[2], row[3], row[4], values)


def seen_between(
    session: Session,
    contact_ids: Collection[int],
    types: Collection[str],
    since: datetime,
    now: datetime,
    groups: Collection[str] = (),
) -> dict[int, list[Seen]]:
    """Per contact, their events of these types from `since` to `now` (both included),
    oldest first, with the values of the `groups` properties."""
    found: dict[int, list[Seen]] = {}
    if not contact_ids or not types:
        return found
    names = tuple(sorted(groups))
    values = {"contact_ids": contact_ids, "types": types, "since": since, "now": now}
    for row in session.execute(_seen_query(names), values).all():
        found.setdefault(row[1], []).append(_seen(row, names))
    return found


@functools.lru_cache(maxsize=16)  # a dispatcher asks with the same few groups every batch
def _seen_query(names: tuple[str, ...]) -> Select[Any]:
    """`seen_between`'s query for these group properties, built once: a batch only binds
    its contacts, types and times.

    From the contacts' rows to their events through the (contact, type, at) index: asked of
    the event table alone, SQLite went through the (type, at) index instead, over the
    window's events of every contact."""
    return (
        select(*_seen_columns(names))
        .select_from(CONTACTS.join(EVENTS, EVENTS.c.contact_id == CONTACTS.c.id))
        .where(
            one_of(CONTACTS.c.id, listed("contact_ids", CONTACTS.c.id)),
            one_of(EVENTS.c.type, listed("types", EVENTS.c.type)),
            EVENTS.c.at >= bindparam("since"),
            EVENTS.c.at <= bindparam("now"),
        )
        .order_by(EVENTS.c.at, EVENTS.c.id)
    )
