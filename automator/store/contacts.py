"""Contacts: upsert by email, date attributes, stages and tags."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, bindparam, delete, func, select, update
from sqlmodel import Session

from automator import casing
from automator.name_keys import name_key
from automator.staged import ContactCopy, ContactData, contact_copy
from automator.store import Store, execute_many, insert, staging, suppressions, table
from automator.store.bulk import loading, unannounced
from automator.store.statements import listed, one_of, prefix_range
from automator.tables import Contact, ContactDate, ContactTag, StageChange, UTCDateTime
from automator.timestamps import in_utc, zone_named

CONTACTS = table(Contact)
DATES = table(ContactDate)
STAGES = table(StageChange)
TAGS = table(ContactTag)


def upsert(
    session: Session, records: list[ContactData], now: datetime, first_stage: str | None = None
) -> list[int]:
    """Insert new contacts and update existing ones (matched by email) in one batch; returns
    their ids.

    A new contact without a stage starts in `first_stage` (the journey's first).
    """
    by_email = {record.email: record for record in records}
    _in_stored_zones(session, records)
    existing = {
        row.email: row
        for row in session.execute(
            select(CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.stage, CONTACTS.c.attributes).where(
                one_of(CONTACTS.c.email, by_email)
            )
        )
    }
    new_rows = [
        _new_row(record, now, first_stage) for email, record in by_email.items() if email not in existing
    ]
    if new_rows:
        execute_many(session, CONTACTS.insert(), new_rows)
        suppressions.suppress_returning(session, [row["email"] for row in new_rows], now)
    _update_existing(session, by_email, existing, now)
    ids = ids_by_email(session, list(by_email))
    staged = {row["email"]: row["stage"] for row in new_rows}
    _record_stages(session, by_email, existing, ids, staged, now)
    _replace_dates(session, by_email, ids, existing.keys())
    return list(ids.values())


Batch = list[ContactData] | ContactCopy  # an import's batch, as the import wrote it


@contextmanager
def loader(
    store: Store, now: datetime, first_stage: str | None, announce: Callable[[str], None] = unannounced
) -> Iterator[Callable[[Batch], list[int]]]:
    """`bulk_upsert` for each batch of an import: each in a transaction of its own, or, into
    an empty contact table, all in one, with the indexes built at its end (`bulk.loading`,
    which `announce`s them). Returns the ids of a batch's contacts."""
    with loading(store.engine, CONTACTS, STAGES, DATES, announce=announce) as session:
        if session is not None:
            yield lambda batch: bulk_upsert(session, batch, now, first_stage)
            return

        def upsert_batch(batch: Batch) -> list[int]:
            with store.transaction() as own:
                return bulk_upsert(own, batch, now, first_stage)

        yield upsert_batch


def batch_size() -> int:
    """Contacts per `bulk_upsert`, the same on both stores: where a batch ends shows in what
    is stored (an address twice in one batch is merged into one stage change, in two
    batches stored as two), and the stores must store the same."""
    return 10_000


def bulk_upsert(session: Session, records: Batch, now: datetime, first_stage: str | None = None) -> list[int]:
    """`upsert` for an import's batch, in a write transaction (`loader`): on PostgreSQL
    through a staging table and one upsert (`staging`), elsewhere as `upsert`. One record
    per email; returns the contacts' ids."""
    if isinstance(records, list):
        if session.get_bind().dialect.name != "postgresql":
            return upsert(session, records, now, first_stage)
        records = contact_copy(records)
    zones = _stored_zones(session, [email for _, email, _ in records.zoneless])
    redated = [(seq, _placed(days, zones[email])) for seq, email, days in records.zoneless if email in zones]
    created, ids = staging.copy_contacts(session, records, now, first_stage, redated)
    suppressions.suppress_returning(session, created, now)
    return ids


def _in_stored_zones(session: Session, records: Sequence[ContactData]) -> None:
    """Place the records' dates without a time at midnight in their stored contacts' zones
    (a `birthday` column imported alone for contacts whose zone an earlier import set)."""
    zoneless = {record.email: record for record in records if record.zoneless}
    for email, zone in _stored_zones(session, zoneless).items():
        record = zoneless[email]
        record.dates.update(_placed(record.zoneless, zone))


# `_stored_zones` on PostgreSQL: the addresses sent as one binary array, which psycopg
# writes several times faster than a text one, whose every element it quotes (`staging`).
_ZONES_BY_EMAIL = "SELECT email, timezone FROM contact WHERE email = ANY(%(emails)b) AND timezone IS NOT NULL"


def _stored_zones(session: Session, emails: Collection[str]) -> dict[str, ZoneInfo]:
    """The time zones of the stored contacts among these addresses that have one."""
    if not emails:
        return {}
    rows: Iterable[Any]
    if session.get_bind().dialect.name == "postgresql":
        rows = session.connection().exec_driver_sql(_ZONES_BY_EMAIL, {"emails": list(emails)})
    else:
        rows = session.execute(
            select(CONTACTS.c.email, CONTACTS.c.timezone).where(
                one_of(CONTACTS.c.email, emails), CONTACTS.c.timezone.is_not(None)
            )
        )
    return {email: zone for email, name in rows if (zone := zone_named(name)) is not None}


def _placed(days: dict[str, date], zone: ZoneInfo) -> dict[str, datetime]:
    """Dates given without a time, at midnight in `zone`; but for one whose UTC time falls
    outside the calendar (0001-01-01 east of Greenwich), which stays where the import put it."""
    placed: dict[str, datetime] = {}
    for name, day in days.items():
        with contextlib.suppress(ValueError):
            placed[name] = in_utc(datetime.combine(day, time(0), tzinfo=zone), day)
    return placed


def _update_existing(
    session: Session, by_email: dict[str, ContactData], existing: dict[str, Any], now: datetime
) -> None:
    """Update the contacts that exist already: the fields a record sets, its attributes over
    the stored ones. One executemany per set of columns changed."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for email, row in existing.items():
        record = by_email[email]
        values = {
            **record.fields,
            "attributes": {**row.attributes, **record.attributes},
            "updated_at": now,
        }
        if record.fields.get("stage") and record.fields["stage"] != row.stage:
            values["stage_entered_at"] = now
        params = {f"_{name}": value for name, value in values.items()}
        by_columns.setdefault(tuple(sorted(values)), []).append({"_id": row.id, **params})
    for columns, rows in by_columns.items():
        # The parameters are named apart from the columns, which SQLAlchemy keeps for itself.
        statement = (
            update(CONTACTS)
            .where(CONTACTS.c.id == bindparam("_id"))
            .values({name: bindparam(f"_{name}") for name in columns})
        )
        session.execute(statement, rows)


def _new_row(record: ContactData, now: datetime, first_stage: str | None) -> dict[str, Any]:
    row = {
        "first_name": None,
        "last_name": None,
        "locale": None,
        "timezone": None,
        "stage": first_stage,
        **record.fields,
        "email": record.email,
        "attributes": record.attributes,
        "created_at": now,
        "updated_at": now,
    }
    row["stage_entered_at"] = now if row["stage"] else None
    return row


def _record_stages(
    session: Session,
    by_email: dict[str, ContactData],
    existing: dict[str, Any],
    ids: dict[str, int],
    staged: dict[str, str | None],
    now: datetime,
) -> None:
    changes = []
    for email, record in by_email.items():
        stage = record.fields.get("stage") or staged.get(email)
        before = existing[email].stage if email in existing else None
        if stage and stage != before:
            changes.append(
                {
                    "contact_id": ids[email],
                    "from_stage": before,
                    "to_stage": stage,
                    "at": now,
                    "cause": "import",
                }
            )
    execute_many(session, STAGES.insert(), changes)


def _replace_dates(
    session: Session, by_email: dict[str, ContactData], ids: dict[str, int], existing: Collection[str]
) -> None:
    """Rewrite changed date attributes; a fresh row id marks the change for the next tick.
    Only the contacts that `existing` names (by email) can have dates stored already."""
    _drop_undated(session, {email: by_email[email] for email in existing}, ids)
    rows = [
        {"contact_id": ids[email], "name": name, "value": value}
        for email, record in by_email.items()
        for name, value in record.dates.items()
    ]
    if not rows:
        return
    current = {
        (row.contact_id, row.name): (row.id, row.value)
        for row in session.execute(
            select(DATES.c.id, DATES.c.contact_id, DATES.c.name, DATES.c.value).where(
                one_of(DATES.c.contact_id, {ids[email] for email in existing})
            )
        )
    }
    changed = {
        current[key][0]
        for row in rows
        if (key := (row["contact_id"], row["name"])) in current and current[key][1] != row["value"]
    }
    if changed:
        session.execute(delete(DATES).where(one_of(DATES.c.id, changed)))
    fresh = [
        row
        for row in rows
        if (row["contact_id"], row["name"]) not in current
        or current[(row["contact_id"], row["name"])][0] in changed
    ]
    statement = insert(session, DATES).on_conflict_do_nothing(index_elements=["contact_id", "name"])
    execute_many(session, statement, fresh)


def _drop_undated(session: Session, by_email: dict[str, ContactData], ids: dict[str, int]) -> None:
    """An attribute re-imported as something that is not a date leaves the date index."""
    by_name: dict[str, list[int]] = {}
    for email, record in by_email.items():
        for name in record.attributes.keys() - record.dates.keys():
            by_name.setdefault(name, []).append(ids[email])
    for name, contact_ids in by_name.items():
        undated = one_of(DATES.c.contact_id, contact_ids)
        session.execute(delete(DATES).where(DATES.c.name == name, undated))


def ids_by_email(session: Session, emails: list[str]) -> dict[str, int]:
    found = session.execute(select(CONTACTS.c.id, CONTACTS.c.email).where(one_of(CONTACTS.c.email, emails)))
    return {email: id_ for id_, email in found.all()}


def ensure(
    session: Session, emails: list[str], now: datetime, first_stage: str | None = None
) -> dict[str, int]:
    """Ids for these emails, creating bare contacts (in `first_stage`) for the unknown ones."""
    ids = ids_by_email(session, emails)
    missing = sorted(set(emails) - set(ids))
    if missing:
        # Another writer (an API request, an import) may make the same contact meanwhile:
        # its row is taken as it is, and only the contacts made here get a first stage.
        made = (
            insert(session, CONTACTS)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(CONTACTS.c.email, CONTACTS.c.id)
        )
        rows = [_new_row(ContactData(email), now, first_stage) for email in missing]
        created = {row.email: row.id for row in session.execute(made, rows)}
        ids.update(ids_by_email(session, [email for email in missing if email not in created]))
        ids.update(created)
        missing = sorted(created)
        suppressions.suppress_returning(session, missing, now)
        if first_stage:
            execute_many(
                session,
                STAGES.insert(),
                [
                    {
                        "contact_id": ids[email],
                        "from_stage": None,
                        "to_stage": first_stage,
                        "at": now,
                        "cause": "created by an event",
                    }
                    for email in missing
                ],
            )
    return ids


def by_email(session: Session, email: str) -> Contact | None:
    found = session.execute(select(Contact).where(CONTACTS.c.email == email.strip().lower()))
    return found.scalars().first()


def by_name(session: Session, prefix: str, limit: int) -> tuple[list[Contact], bool]:
    """Contacts whose first or last name starts with `prefix` (in lower case), or whose whole
    name does, first name then last or last then first ("đức ph" finds Đức Phạm, and so
    does "phạm đ"): at most `limit` from each name's index, and whether there are more.

    Each spelling of the prefix (see `automator.casing`) is a range of a name index, read in
    its order: a search costs what it finds, not what the table holds. A prefix cut short, or
    of several words, reads up to CUT_READ names a spelling (of its first word, for several)
    and keeps those whose name, or whole name, starts with the whole of it."""
    prefix = " ".join(prefix.split())
    words = prefix.split(" ")
    spellings, cut = casing.stored_spellings(words[0])
    read = CUT_READ if cut or len(words) > 1 else limit + 1
    found: dict[int | None, Contact] = {}
    more = False
    for column, other in ((CONTACTS.c.first_name, "last_name"), (CONTACTS.c.last_name, "first_name")):
        matched: dict[int | None, Contact] = {}
        for spelling in spellings:
            rows = list(session.execute(_name_range(column, spelling, read)).scalars())
            more = more or len(rows) == read
            matched.update((c.id, c) for c in rows if _named(c, column.name, other, prefix))
        more = more or len(matched) > limit
        found.update(sorted(matched.items(), key=lambda item: item[1].email)[:limit])
    return list(found.values()), more


def _named(contact: Contact, name: str, other: str, prefix: str) -> bool:
    """Whether the contact's `name` followed by its `other` name, words one space apart,
    starts with `prefix` (words one space apart): a prefix of the name alone is one of it."""
    first, then = getattr(contact, name), getattr(contact, other)
    return first is not None and casing.starts_with(" ".join(f"{first} {then or ''}".split()), prefix)


# Names a spelling of a prefix cut short (`automator.casing.MOST_SPELLINGS`) reads at most.
CUT_READ = 1000


def _name_range(column: Any, spelling: str, read: int) -> Any:
    """The contacts whose lower-case `column` starts with `spelling`, in the index's order."""
    key = name_key(column)
    return select(Contact).where(prefix_range(key, spelling)).order_by(key).limit(read)


def by_id(session: Session, contact_id: int) -> Contact | None:
    return session.get(Contact, contact_id)


# What the dispatcher runs with every group of outcomes (a rule's `then`), every few
# milliseconds while a batch goes out: built once, only bound at each call.
_IDS = listed("ids", CONTACTS.c.id)
_AT = bindparam("at", type_=UTCDateTime())
_STAGES_NOW = select(CONTACTS.c.id, CONTACTS.c.stage).where(one_of(CONTACTS.c.id, _IDS))
_MOVE = (
    update(CONTACTS)
    .where(one_of(CONTACTS.c.id, _IDS))
    .values(stage=bindparam("new_stage"), stage_entered_at=_AT, updated_at=_AT)
)
_TAGGED = select(CONTACTS.c.id, bindparam("tag", type_=String()), _AT).where(one_of(CONTACTS.c.id, _IDS))
_TAG: dict[str, Any] = {}  # by dialect: their INSERT … ON CONFLICT differ


def move_many(session: Session, moves: list[tuple[int, str | None, str, str]], at: datetime) -> None:
    """(contact id, from stage, to stage, cause) for several contacts, in order: each move
    recorded, each contact left in its last stage (one UPDATE per stage)."""
    if not moves:
        return
    execute_many(
        session,
        STAGES.insert(),
        [
            {"contact_id": cid, "from_stage": old, "to_stage": new, "at": at, "cause": cause}
            for cid, old, new, cause in moves
        ],
    )
    final = {cid: new for cid, _, new, _ in moves}
    by_stage: dict[str, list[int]] = {}
    for cid, stage in final.items():
        by_stage.setdefault(stage, []).append(cid)
    for stage, contact_ids in by_stage.items():
        session.execute(_MOVE, {"ids": contact_ids, "new_stage": stage, "at": at})


def add_tags(session: Session, tags: list[tuple[int, str]], at: datetime) -> None:
    """Tag contacts (contact id, tag); a tag a contact already has keeps its date."""
    by_tag: dict[str, set[int]] = {}
    for cid, tag in tags:
        by_tag.setdefault(tag, set()).add(cid)
    dialect = session.get_bind().dialect.name
    if dialect not in _TAG:
        _TAG[dialect] = (
            insert(session, TAGS)
            .from_select(["contact_id", "tag", "added_at"], _TAGGED)
            .on_conflict_do_nothing(index_elements=["contact_id", "tag"])
        )
    for tag, contact_ids in by_tag.items():
        session.execute(_TAG[dialect], {"ids": list(contact_ids), "tag": tag, "at": at})


def tags(session: Session, contact_id: int) -> list[str]:
    return list(
        session.execute(
            select(TAGS.c.tag).where(TAGS.c.contact_id == contact_id).order_by(TAGS.c.tag)
        ).scalars()
    )


def stage_history(session: Session, contact_id: int) -> list[StageChange]:
    return list(
        session.execute(
            select(StageChange).where(STAGES.c.contact_id == contact_id).order_by(STAGES.c.at, STAGES.c.id)
        ).scalars()
    )


def stage_at(session: Session, contact: Contact, at: datetime) -> str | None:
    """The contact's stage at `at`, from its stage history: the one it last moved to by
    then. Before anything is recorded of it (a contact imported today, with yesterday's
    events), its stage now, as a tick would read it."""
    moved = session.execute(
        select(STAGES.c.to_stage)
        .where(STAGES.c.contact_id == contact.id, STAGES.c.at <= at)
        .order_by(STAGES.c.at.desc(), STAGES.c.id.desc())
        .limit(1)
    ).first()
    return str(moved.to_stage) if moved is not None else contact.stage


def dates(session: Session, contact_id: int) -> dict[str, datetime]:
    return {
        name: value
        for name, value in session.execute(
            select(DATES.c.name, DATES.c.value).where(DATES.c.contact_id == contact_id)
        )
    }


@dataclass(slots=True)
class Recipient:
    """What dispatch reads of a message's contact: the name for the To header, the time zone
    for quiet hours, the stage its rules are limited to."""

    id: int
    first_name: str | None
    last_name: str | None
    timezone: str | None
    stage: str | None


def current_stages(session: Session, contact_ids: Collection[int]) -> dict[int, str | None]:
    """The stage each contact is in now (an event may have moved it a moment ago)."""
    rows = session.execute(_STAGES_NOW, {"ids": list(contact_ids)}).all()
    return {contact_id: stage for contact_id, stage in rows}


def dates_of(session: Session, contact_ids: set[int]) -> dict[int, dict[str, datetime]]:
    """Date attributes of several contacts: contact id → name → value."""
    found: dict[int, dict[str, datetime]] = {}
    if contact_ids:
        rows = session.execute(
            select(DATES.c.contact_id, DATES.c.name, DATES.c.value).where(
                one_of(DATES.c.contact_id, contact_ids)
            )
        )
        for contact_id, name, value in rows:
            found.setdefault(contact_id, {})[name] = value
    return found


def undated(session: Session, name: str, shown: int = 3) -> tuple[int, list[tuple[str, Any]]]:
    """The contacts whose attribute `name` holds something that is not a date (text such as
    "17/05/1990"), which a date trigger on it never sees: how many, and a few of them
    (email, value)."""
    value = CONTACTS.c.attributes[name].as_string()
    dated = select(DATES.c.id).where(DATES.c.contact_id == CONTACTS.c.id, DATES.c.name == name).exists()
    found = select(CONTACTS.c.email, value).where(value.is_not(None), ~dated)
    count = session.execute(select(func.count()).select_from(found.subquery())).scalar_one()
    examples = session.execute(found.order_by(CONTACTS.c.id).limit(shown))
    return count, [(email, text) for email, text in examples]
