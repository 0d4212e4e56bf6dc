"""`events import`: events from a CSV, JSONL or JSON file, each stored once by its key.

An event's key is the sender's id, or a hash of the whole event, so that a file imported
twice (or an identical line twice) stores each event once. In a CSV, every column other than
id, type, email and at is one of the event's properties (its values text), as every column
of a contacts CSV other than the contact's fields is an attribute: a shop's export of carts
or orders imports as it is.

An import's reading process (`overlap.reading`) imports this module and runs `_batches`: the
store, and the database's libraries with it, are imported by `import_events` alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from automator.errors import ImportRecordError
from automator.importing import screening
from automator.importing.files import RecordFile
from automator.importing.overlap import in_background, reading, stored_in_order
from automator.importing.records import EVENT_FIELDS, EventRecord, reason
from automator.importing.report import ImportReport, Tally, Watcher
from automator.journey import Journey
from automator.memory import collecting_young_objects_only
from automator.staged import EventCopy, EventData, event_copy

if TYPE_CHECKING:
    from automator.store import Store


def event_key(record: EventRecord) -> str:
    """The sender's id, or a hash of the whole event so an identical line is stored once."""
    return _key(record.id, record.type, record.email, record.at, record.properties)


def _key(id_: str | None, type_: str, email: str, at: datetime, properties: dict[str, Any]) -> str:
    if id_ and not id_.isspace():  # a blank id is none: as a key it made every other event a duplicate
        return id_
    canonical = json.dumps([type_, email, at.isoformat(), properties], sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def import_events(
    store: Store, path: Path, journey: Journey, now: datetime, watcher: Watcher | None = None
) -> ImportReport:
    """Store the file's events once per key, and apply the journey moves of the new ones."""
    from automator.store import events as event_store  # not at the top: see the module's docstring

    tally = Tally(watcher)
    dialect = store.engine.dialect.name
    size, apart = event_store.batch_size(), in_background(store)
    with (
        reading(_prepared_batches, path, EVENT_FIELDS, tally, size, dialect, apart=apart) as file,
        event_store.loader(store, journey, now, tally.finishing) as add,
        collecting_young_objects_only(),
    ):
        for batch, new in stored_in_order(file.batches, add, apart and not file.apart):
            tally.report.imported += new
            tally.report.duplicates += len(batch) - new
            tally.advanced(file.done, file.size)
        return tally.ended(path, file.nothing)


def _prepared_batches(
    records: RecordFile, path: Path, tally: Tally, size: int, dialect: str
) -> Iterator[list[EventData] | EventCopy]:
    """`_batches`, each as the store takes it: on PostgreSQL the rows of its COPY, made where
    the file is read."""
    batches = _batches(records, path, tally, size)
    return map(event_copy, batches) if dialect == "postgresql" else batches


def _batches(records: RecordFile, path: Path, tally: Tally, size: int) -> Iterator[list[EventData]]:
    """The valid events, `size` at a time; each problem reported to `tally`."""
    batch: list[EventData] = []
    regroup = records.is_csv  # a CSV's other columns are the properties (`csv_event`)
    for line, raw, clean in records:
        tally.report.read += 1
        if regroup and not isinstance(raw, ImportRecordError):
            raw = csv_event(raw, path, line)
        data = _event(raw, clean, path, line)
        if isinstance(data, ImportRecordError):
            tally.reject(data)
            continue
        batch.append(data)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# The fields of an event a CSV's columns name; every other column is a property.
CSV_FIELDS = EVENT_FIELDS - {"properties"}


def csv_event(row: dict[str, Any], path: Path, line: int) -> dict[str, Any] | ImportRecordError:
    """A CSV row as an event record: its fields, and its other columns as the properties."""
    if "properties" in row:
        return ImportRecordError(
            str(path),
            line,
            "properties: a CSV has no properties column; every column other than id, type, "
            "email and at is a property, named by its header",
        )
    record = {key: value for key, value in row.items() if key in CSV_FIELDS}
    properties = {key: value for key, value in row.items() if key not in CSV_FIELDS}
    return {**record, "properties": properties} if properties else record


def _event(
    raw: dict[str, Any] | ImportRecordError, clean: bool, path: Path, line: int
) -> EventData | ImportRecordError:
    if isinstance(raw, ImportRecordError):
        return raw
    quick = screening.event(raw) if clean else None
    if quick is not None:
        return EventData(_key(*quick), *quick[1:])
    try:
        record = EventRecord.model_validate(raw)
    except ValidationError as exc:
        return ImportRecordError(str(path), line, reason(exc))
    return EventData(event_key(record), record.type, record.email, record.at, record.properties)
