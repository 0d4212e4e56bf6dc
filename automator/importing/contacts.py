"""`contacts import`: contacts from a CSV or JSONL file, upserted by email in batches.

Each record is validated on its own: a bad one is reported with its line and reason, and
every good one is still imported. An attribute that is an ISO 8601 date or time is indexed
as a date (date triggers read it); one that only looks like a date (`17/05/1990`) is kept as
text, and the import warns about it with its line and field, since a date rule would never
see it.

An import's reading process (`overlap.reading`) imports this module and runs `_batches`: the
store, and the database's libraries with it, are imported by `import_contacts` alone.
"""

from __future__ import annotations

import calendar
import contextlib
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from automator.errors import ImportRecordError
from automator.importing import screening
from automator.importing.files import RecordFile
from automator.importing.overlap import in_background, reading, stored_in_order
from automator.importing.records import KNOWN_FIELDS, ContactRecord, parse_timestamp, reason
from automator.importing.report import ImportReport, RecordWarning, Tally, Watcher
from automator.importing.seen import SeenIds
from automator.journey import Journey
from automator.memory import collecting_young_objects_only
from automator.staged import ContactCopy, ContactData, contact_copy
from automator.timestamps import in_utc

if TYPE_CHECKING:
    from automator.store import Store


def contact_data(record: ContactRecord, journey: Journey, default_zone: ZoneInfo) -> ContactData:
    """Split a validated record into known fields, attributes and indexed dates."""
    fields = {name: getattr(record, name) for name in KNOWN_FIELDS if getattr(record, name)}
    return _split(record.email, fields, record.model_extra or {}, journey, default_zone)


def _split(
    email: str, fields: dict[str, str], extra: dict[str, Any], journey: Journey, default_zone: ZoneInfo
) -> ContactData:
    stage = fields.get("stage")
    if stage and stage not in journey.stages:
        raise ValueError(f'stage: unknown stage "{stage}" (stages are {", ".join(journey.stages)})')
    zone = ZoneInfo(fields["timezone"]) if fields.get("timezone") else default_zone
    attributes: dict[str, Any] = {}
    dates: dict[str, datetime] = {}
    zoneless: dict[str, date] = {}
    for name, value in extra.items():
        parsed = _iso_value(value)
        if isinstance(parsed, datetime):
            moment = _utc(name, parse_timestamp, value, zone)
            attributes[name], dates[name] = moment.isoformat(), moment
        elif isinstance(parsed, date):
            attributes[name] = parsed.isoformat()
            dates[name] = _utc(name, in_utc, datetime.combine(parsed, time(0), tzinfo=zone), value)
            if not fields.get("timezone"):
                zoneless[name] = parsed
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            attributes[name] = value.lower() == "true"  # CSV has no booleans; conditions compare them
        else:
            attributes[name] = value
    return ContactData(email=email, fields=fields, attributes=attributes, dates=dates, zoneless=zoneless)


def merged(earlier: ContactData, later: ContactData) -> ContactData:
    """Two records for one address as one: what storing them one after the other stores (the
    later one's fields and attributes over the earlier one's, which it does not name are
    kept). A date without a time in the later one is placed in the time zone the earlier
    one set, as it would be in the stored contact's."""
    zone = earlier.fields.get("timezone") if not later.fields.get("timezone") else None
    dates, zoneless = {**earlier.dates, **later.dates}, dict(earlier.zoneless)
    for name, day in later.zoneless.items():
        zoneless.pop(name, None)
        if not zone:
            zoneless[name] = day
            continue
        with contextlib.suppress(ValueError):  # 0001-01-01 east of UTC: left where the later put it
            dates[name] = in_utc(datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)), day)
    for name in later.dates.keys() - later.zoneless.keys():
        zoneless.pop(name, None)
    for name in later.attributes.keys() - later.dates.keys():  # no longer a date
        dates.pop(name, None)
        zoneless.pop(name, None)
    fields, attributes = {**earlier.fields, **later.fields}, {**earlier.attributes, **later.attributes}
    return ContactData(later.email, fields, attributes, dates, zoneless)


def _utc(name: str, convert: Callable[..., datetime], *given: Any) -> datetime:
    """`convert(*given)`, its ValueError (a time outside the calendar in UTC) naming the field."""
    try:
        return convert(*given)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _iso_value(value: Any) -> date | datetime | None:
    """An ISO date or datetime in an attribute, or None for anything else."""
    if not isinstance(value, str) or len(value) < 10 or value[4:5] != "-" or value[7:8] != "-":
        return None
    try:
        return (
            date.fromisoformat(value)
            if len(value) == 10
            else datetime.fromisoformat(value.replace("Z", "+00:00"))
        )
    except ValueError:
        return None


# Day, month and year in some order, with a time or not: what a spreadsheet or a form writes
# for a date. A two-digit year only between slashes (1.2.10 is a version number); an order
# reference with letters is no date.
_DATE_LIKE = re.compile(
    r"(?:(?P<a>\d{1,2})(?P<s>[./-])(?P<b>\d{1,2})(?P=s)(?P<y>\d{4}|(?<=/)\d{2})"
    r"|(?P<y2>\d{4})(?P<s2>[./-])(?P<m>\d{1,2})(?P=s2)(?P<d>\d{1,2}))"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


def date_like(value: Any) -> str | None:
    """Why a text attribute that looks like a date is not taken for one, or None when it
    does not look like one (or is an ISO 8601 date, which is taken)."""
    # Every date this knows starts with a digit: most text is passed over on that alone.
    if not isinstance(value, str) or not value.lstrip()[:1].isdigit() or _iso_value(value) is not None:
        return None
    found = _DATE_LIKE.fullmatch(value.strip())
    if found is None:
        return None
    if found["y2"]:  # year first: ISO-shaped but not a real date, or written with / or .
        month, day = int(found["m"]), int(found["d"])
        plausible = 1 <= month <= 12 and 1 <= day <= 31
        if not plausible:
            return f'"{value}" is not a date (month {month}, day {day})'
        iso = f"{int(found['y2']):04d}-{month:02d}-{day:02d}"
        if value.strip().startswith(iso):  # written as ISO 8601 already: no such day exists
            return f'"{value}" is not a date: {calendar.month_name[month]} {found["y2"]} has no day {day}'
        return f'"{value}" is not an ISO 8601 date; write {iso}'
    first, second = int(found["a"]), int(found["b"])
    if not (1 <= first <= 31 and 1 <= second <= 31 and min(first, second) <= 12):
        return None
    hint = ""
    if len(found["y"]) == 4 and first != second and max(first, second) > 12:
        day, month = max(first, second), min(first, second)
        hint = f" ({found['y']}-{month:02d}-{day:02d})"
    elif len(found["y"]) == 4 and first != second:
        hint = " (day and month could be either way round)"
    return f'"{value}" is not an ISO 8601 date; write YYYY-MM-DD{hint}'


def import_contacts(
    store: Store,
    path: Path,
    journey: Journey,
    default_zone: ZoneInfo,
    now: datetime,
    watcher: Watcher | None = None,
) -> ImportReport:
    """Upsert the file's contacts by email; a later line for the same email is merged into
    the earlier one, its fields winning. Within a batch the two are merged before they are
    stored; a later batch's record is stored over what the earlier one stored, which comes
    to the same fields and attributes (`merged`; not the same stage changes: two are
    recorded), and counts as merged too, so that the count does not depend on where the
    batches end."""
    from automator.store import contacts as contact_store  # not at the top: see the module's docstring

    tally = Tally(watcher)
    seen = SeenIds()
    dialect = store.engine.dialect.name
    size, apart = contact_store.batch_size(), in_background(store)
    fields, more = ("email", *KNOWN_FIELDS), (journey, default_zone, dialect)
    with (
        reading(_prepared_batches, path, fields, tally, size, *more, apart=apart) as file,
        contact_store.loader(store, now, journey.first_stage, tally.finishing) as upsert,
        collecting_young_objects_only(),
    ):
        store_batch = lambda each: upsert(each[0])  # noqa: E731
        for (_, taken), ids in stored_in_order(file.batches, store_batch, apart and not file.apart):
            tally.report.imported += taken
            tally.report.merged += seen.add_all(ids)
            tally.advanced(file.done, file.size)
        return tally.ended(path, file.nothing)


def _prepared_batches(
    records: RecordFile, path: Path, tally: Tally, size: int, journey: Journey, zone: ZoneInfo, dialect: str
) -> Iterator[tuple[list[ContactData] | ContactCopy, int]]:
    """`_batches`, each as the store takes it: on PostgreSQL the rows of its COPY, made where
    the file is read."""
    for batch, taken in _batches(records, path, tally, size, journey, zone):
        yield (contact_copy(batch) if dialect == "postgresql" else batch), taken


def _batches(
    records: RecordFile, path: Path, tally: Tally, size: int, journey: Journey, zone: ZoneInfo
) -> Iterator[tuple[list[ContactData], int]]:
    """The valid contacts, `size` at a time, one per email (a later line for the same email
    merged into the earlier one), with the number of records each batch holds; each problem
    reported to `tally`."""
    batch: dict[str, ContactData] = {}
    taken = 0
    for line, raw, clean in records:
        tally.report.read += 1
        data = _contact(raw, clean, path, line, journey, zone)
        if isinstance(data, ImportRecordError):
            tally.reject(data)
            continue
        for name, value in data.attributes.items():
            if name not in data.dates and (problem := date_like(value)):
                tally.warn(RecordWarning(str(path), line, f"{name}: {problem}; kept as text"))
        if (earlier := batch.get(data.email)) is not None:
            data = merged(earlier, data)
            tally.report.merged += 1
        batch[data.email] = data
        taken += 1
        if len(batch) >= size:
            yield list(batch.values()), taken
            batch, taken = {}, 0
    if batch:
        yield list(batch.values()), taken


def _contact(
    raw: dict[str, Any] | ImportRecordError,
    clean: bool,
    path: Path,
    line: int,
    journey: Journey,
    zone: ZoneInfo,
) -> ContactData | ImportRecordError:
    if isinstance(raw, ImportRecordError):
        return raw
    try:
        quick = screening.contact(raw) if clean else None
        if quick is not None:
            return _split(*quick, journey, zone)
        return contact_data(ContactRecord.model_validate(raw), journey, zone)
    except ValidationError as exc:
        return ImportRecordError(str(path), line, reason(exc))
    except ValueError as exc:
        return ImportRecordError(str(path), line, str(exc))
