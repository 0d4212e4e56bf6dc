"""Contacts: upsert by email, date attributes, stages and tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, select, update
from sqlmodel import Session

from automator.store import execute_many, insert, table
from automator.tables import Contact, ContactDate, ContactTag, StageChange, UTCDateTime

CONTACTS = table(Contact)
DATES = table(ContactDate)
STAGES = table(StageChange)
TAGS = table(ContactTag)


@dataclass
class ContactData:
    """One contact as imported: known fields, JSON-ready attributes and parsed date attributes."""

    email: str
    fields: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    dates: dict[str, datetime] = field(default_factory=dict)


def upsert(
    session: Session, records: list[ContactData], now: datetime, first_stage: str | None = None
) -> None:
    """Insert new contacts and update existing ones (matched by email) in one batch.

    A new contact without a stage starts in `first_stage` (the journey's first).
    """
    by_email = {record.email: record for record in records}
    existing = {
        row.email: row
        for row in session.execute(
            select(CONTACTS.c.id, CONTACTS.c.email, CONTACTS.c.stage, CONTACTS.c.attributes).where(
                CONTACTS.c.email.in_(by_email)
            )
        )
    }
    new_rows = [
        _new_row(record, now, first_stage) for email, record in by_email.items() if email not in existing
    ]
    if new_rows:
        session.execute(CONTACTS.insert(), new_rows)
    for email, row in existing.items():
        record = by_email[email]
        values = {
            **record.fields,
            "attributes": {**row.attributes, **record.attributes},
            "updated_at": now,
        }
        if record.fields.get("stage") and record.fields["stage"] != row.stage:
            values["stage_entered_at"] = now
        session.execute(update(CONTACTS).where(CONTACTS.c.id == row.id).values(**values))
    ids = ids_by_email(session, list(by_email))
    staged = {row["email"]: row["stage"] for row in new_rows}
    _record_stages(session, by_email, existing, ids, staged, now)
    _replace_dates(session, by_email, ids)


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
    if changes:
        session.execute(STAGES.insert(), changes)


def _replace_dates(session: Session, by_email: dict[str, ContactData], ids: dict[str, int]) -> None:
    """Rewrite changed date attributes; a fresh row id marks the change for the next tick."""
    _drop_undated(session, by_email, ids)
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
                DATES.c.contact_id.in_({row["contact_id"] for row in rows})
            )
        )
    }
    changed = {
        current[key][0]
        for row in rows
        if (key := (row["contact_id"], row["name"])) in current and current[key][1] != row["value"]
    }
    if changed:
        session.execute(delete(DATES).where(DATES.c.id.in_(changed)))
    fresh = [
        row
        for row in rows
        if (row["contact_id"], row["name"]) not in current
        or current[(row["contact_id"], row["name"])][0] in changed
    ]
    if fresh:
        session.execute(
            insert(session, DATES).on_conflict_do_nothing(index_elements=["contact_id", "name"]), fresh
        )


def _drop_undated(session: Session, by_email: dict[str, ContactData], ids: dict[str, int]) -> None:
    """An attribute re-imported as something that is not a date leaves the date index."""
    by_name: dict[str, list[int]] = {}
    for email, record in by_email.items():
        for name in record.attributes.keys() - record.dates.keys():
            by_name.setdefault(name, []).append(ids[email])
    for name, contact_ids in by_name.items():
        session.execute(delete(DATES).where(DATES.c.name == name, DATES.c.contact_id.in_(contact_ids)))


def ids_by_email(session: Session, emails: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for start in range(0, len(emails), 500):
        chunk = emails[start : start + 500]
        ids.update(
            {
                email: id_
                for id_, email in session.execute(
                    select(CONTACTS.c.id, CONTACTS.c.email).where(CONTACTS.c.email.in_(chunk))
                )
            }
        )
    return ids


def ensure(
    session: Session, emails: list[str], now: datetime, first_stage: str | None = None
) -> dict[str, int]:
    """Ids for these emails, creating bare contacts (in `first_stage`) for the unknown ones."""
    ids = ids_by_email(session, emails)
    missing = sorted(set(emails) - set(ids))
    if missing:
        session.execute(
            CONTACTS.insert(), [_new_row(ContactData(email), now, first_stage) for email in missing]
        )
        ids.update(ids_by_email(session, missing))
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


def by_id(session: Session, contact_id: int) -> Contact | None:
    return session.get(Contact, contact_id)


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
        session.execute(
            update(CONTACTS)
            .where(CONTACTS.c.id.in_(contact_ids))
            .values(stage=stage, stage_entered_at=at, updated_at=at)
        )


def add_tags(session: Session, tags: list[tuple[int, str]], at: datetime) -> None:
    """Tag contacts (contact id, tag); a tag a contact already has keeps its date."""
    by_tag: dict[str, set[int]] = {}
    for cid, tag in tags:
        by_tag.setdefault(tag, set()).add(cid)
    for tag, contact_ids in by_tag.items():
        rows = select(CONTACTS.c.id, literal(tag), literal(at, UTCDateTime())).where(
            CONTACTS.c.id.in_(contact_ids)
        )
        session.execute(
            insert(session, TAGS)
            .from_select(["contact_id", "tag", "added_at"], rows)
            .on_conflict_do_nothing(index_elements=["contact_id", "tag"])
        )


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


def current_stages(session: Session, known: dict[int, str | None]) -> dict[int, str | None]:
    """The stage each contact is in now, given the stage it was in a moment ago: only the
    few whose stage changed since are read back."""
    by_stage: dict[str | None, list[int]] = {}
    for contact_id, stage in known.items():
        by_stage.setdefault(stage, []).append(contact_id)
    current = dict(known)
    for stage, contact_ids in by_stage.items():
        moved = select(CONTACTS.c.id, CONTACTS.c.stage).where(
            CONTACTS.c.id.in_(contact_ids), CONTACTS.c.stage.is_distinct_from(stage)
        )
        current.update({contact_id: now for contact_id, now in session.execute(moved)})
    return current


def dates_of(session: Session, contact_ids: set[int]) -> dict[int, dict[str, datetime]]:
    """Date attributes of several contacts: contact id → name → value."""
    found: dict[int, dict[str, datetime]] = {}
    if contact_ids:
        rows = session.execute(
            select(DATES.c.contact_id, DATES.c.name, DATES.c.value).where(DATES.c.contact_id.in_(contact_ids))
        )
        for contact_id, name, value in rows:
            found.setdefault(contact_id, {})[name] = value
    return found
