"""Contacts and events as the store takes them (`ContactData`, `EventData`), and an import's
batch of them already written as the rows of PostgreSQL's COPY (`ContactCopy`, `EventCopy`).

Kept apart from the store, which imports the database's libraries: an import's reading
process (`importing.overlap`) makes these, and needs none of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson


@dataclass
class ContactData:
    """One contact as imported: known fields, JSON-ready attributes and parsed date attributes."""

    email: str
    fields: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    dates: dict[str, datetime] = field(default_factory=dict)
    # Dates given without a time, in a record that names no time zone: midnight in the
    # zone the stored contact has (`dates` holds them at midnight in the project's zone,
    # for a new contact or one without a zone).
    zoneless: dict[str, date] = field(default_factory=dict)


@dataclass
class EventData:
    key: str
    type: str
    email: str
    at: datetime
    properties: dict[str, Any]


@dataclass(frozen=True)
class EventCopy:
    """A batch of events as `staging.copy_events` sends them: the rows of its COPY (each
    key's first line only), the keys they hold and the batch's addresses. Made where the
    file is read, so that the process storing the batch before it does not write them:
    about 5 µs of Python an event, during which the server would sit idle."""

    rows: bytes
    keys: list[str]
    emails: list[str]
    count: int  # events in the batch, its keys' later lines included

    def __len__(self) -> int:
        return self.count


def event_copy(records: Sequence[EventData]) -> EventCopy:
    """The batch's events in COPY's text format: a tab between values, a backslash before a
    backslash (in JSON, one comes before every escaped character), and no tab or line end in
    a value (imported text holds none; JSON escapes those within a property)."""
    lines: list[str] = []
    keys: list[str] = []
    first: set[str] = set()
    for seq, record in enumerate(records):
        key = record.key
        if key in first:  # a key's first line is the one stored
            continue
        first.add(key)
        keys.append(key)
        properties, at = _copy_text(json_bytes(record.properties).decode()), record.at.isoformat()
        lines.append(
            f"{seq}\t{_copy_text(key)}\t{_copy_text(record.email)}\t{_copy_text(record.type)}\t{at}\t{properties}\n"
        )
    emails = sorted({record.email for record in records})
    return EventCopy("".join(lines).encode(), keys, emails, len(records))


# A contact's known fields, in the order of their columns in `staging.COPY_CONTACTS`.
CONTACT_FIELDS = ("first_name", "last_name", "locale", "timezone", "stage")


@dataclass(frozen=True)
class ContactCopy:
    """A batch of contacts (one record per address) as `staging.copy_contacts` sends them:
    the rows of its COPY, and the batch's addresses in its order. Made where the file is
    read, as `EventCopy`. A date given without a time, in a record that names no time zone,
    is in its row at midnight in the project's zone, and listed in `zoneless` (with the
    record's place in the batch and its address): the store places it in the stored
    contact's zone, if it has one, before the batch is stored (`contacts.bulk_upsert`)."""

    rows: bytes
    emails: list[str]
    zoneless: list[tuple[int, str, dict[str, date]]]

    def __len__(self) -> int:
        return len(self.emails)


def contact_copy(records: Sequence[ContactData]) -> ContactCopy:
    """The batch's contacts in COPY's text format (as `event_copy`: a contact's text holds no
    tab or line end, and JSON escapes them)."""
    lines: list[str] = []
    for seq, record in enumerate(records):
        fields = [record.fields.get(name) for name in CONTACT_FIELDS]
        values = [
            str(seq),
            _copy_text(record.email),
            *(_COPY_NULL if value is None else _copy_text(value) for value in fields),
            _copy_text(json_bytes(record.attributes).decode()),
            _copy_text(dates_json(record.dates)),
        ]
        lines.append("\t".join(values) + "\n")
    zoneless = [(seq, record.email, record.zoneless) for seq, record in enumerate(records) if record.zoneless]
    return ContactCopy("".join(lines).encode(), [record.email for record in records], zoneless)


def dates_json(dates: dict[str, datetime]) -> str:
    """A contact's date attributes as its staged `dates` column holds them: a JSON object of
    naive UTC times, which the statements that index them cast to `timestamp`."""
    return json_bytes({name: naive_utc(value).isoformat() for name, value in dates.items()}).decode()


_COPY_NULL = "\\N"  # NULL in COPY's text format


def _copy_text(value: str) -> str:
    """A value as COPY's text format writes it: its backslashes doubled."""
    return value.replace("\\", "\\\\") if "\\" in value else value


def json_bytes(value: Any) -> bytes:
    """JSON text; the standard library's for what orjson refuses (an integer beyond 64 bits,
    which an import file may hold, kept exact)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def naive_utc(moment: datetime) -> datetime:
    """As PostgreSQL's `timestamp` columns keep times: UTC without the zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)
