"""Import contacts (CSV or JSONL) and events (JSONL).

Each record is validated on its own: a bad one is reported with its line number and reason,
and every good one is still imported.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from automator.errors import AutomatorError, ImportRecordError
from automator.journey import Journey
from automator.store import Store
from automator.store import contacts as contact_store
from automator.store import events as event_store
from automator.store.contacts import ContactData
from automator.store.events import EventData

BATCH = 2000
KNOWN_FIELDS = ("first_name", "last_name", "locale", "timezone", "stage")


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    errors: list[ImportRecordError] = field(default_factory=list)


def normalize_email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("email is required")
    return _normalize_email(value.strip())


@functools.lru_cache(maxsize=65536)  # an events file repeats the same addresses many times
def _normalize_email(value: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f'email "{value}" is not valid: {exc}') from exc
    return checked.normalized.lower()


def parse_timestamp(value: Any, zone: tzinfo | None = None) -> datetime:
    """ISO 8601 → aware UTC datetime. A value without offset needs `zone`."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f'"{value}" is not an ISO 8601 time, e.g. 2026-11-20T10:00:00+07:00') from None
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 time")
    if parsed.tzinfo is None:
        if zone is None:
            raise ValueError(f'"{value}" has no time zone offset (add Z or +07:00)')
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


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


class ContactRecord(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: str
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    stage: str | None = None

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str:
        return normalize_email(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f'unknown time zone "{value}" (use an IANA name such as Asia/Ho_Chi_Minh)'
                ) from None
        return value or None


class EventRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    type: str
    email: str
    at: datetime
    properties: dict[str, Any] = {}

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str:
        return normalize_email(value)

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> datetime:
        return parse_timestamp(value)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not value.replace("_", "").isalnum():
            raise ValueError(f'"{value}" is not an event type (letters, digits and _)')
        return value


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | ImportRecordError]]:
    """(line number, record or error) for each record of a .csv or .jsonl file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_records(path)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        yield from _jsonl_records(path)
    else:
        raise AutomatorError(f"{path}: use a .csv (with a header row) or .jsonl file")


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | ImportRecordError]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, ImportRecordError(str(path), line, "more values than header columns")
                continue
            yield (
                line,
                {key.strip(): value for key, value in row.items() if key and value not in (None, "")},
            )


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | ImportRecordError]]:
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, ImportRecordError(str(path), line, f"not valid JSON: {exc.msg}")
                continue
            if not isinstance(data, dict):
                yield line, ImportRecordError(str(path), line, "each line must be a JSON object")
                continue
            yield line, data


def contact_data(record: ContactRecord, journey: Journey, default_zone: ZoneInfo) -> ContactData:
    """Split a validated record into known fields, attributes and indexed dates."""
    if record.stage and record.stage not in journey.stages:
        raise ValueError(f'stage: unknown stage "{record.stage}" (stages are {", ".join(journey.stages)})')
    fields = {name: getattr(record, name) for name in KNOWN_FIELDS if getattr(record, name)}
    zone = ZoneInfo(record.timezone) if record.timezone else default_zone
    attributes: dict[str, Any] = {}
    dates: dict[str, datetime] = {}
    for name, value in (record.model_extra or {}).items():
        parsed = _iso_value(value)
        if isinstance(parsed, datetime):
            moment = parse_timestamp(parsed, zone)
            attributes[name], dates[name] = moment.isoformat(), moment
        elif isinstance(parsed, date):
            attributes[name] = parsed.isoformat()
            dates[name] = datetime.combine(parsed, time(0), tzinfo=zone).astimezone(UTC)
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            attributes[name] = value.lower() == "true"  # CSV has no booleans; conditions compare them
        else:
            attributes[name] = value
    return ContactData(email=record.email, fields=fields, attributes=attributes, dates=dates)


def import_contacts(
    store: Store, path: Path, journey: Journey, default_zone: ZoneInfo, now: datetime
) -> ImportReport:
    report = ImportReport()
    batch: dict[str, ContactData] = {}
    for line, raw in read_records(path):
        report.read += 1
        try:
            data = _contact(raw, path, line, journey, default_zone)
        except ImportRecordError as exc:
            report.errors.append(exc)
            continue
        batch[data.email] = data  # a later line for the same email wins
        if len(batch) >= BATCH:
            report.imported += _flush_contacts(store, batch, now, journey.first_stage)
    report.imported += _flush_contacts(store, batch, now, journey.first_stage)
    return report


def _contact(
    raw: dict[str, Any] | ImportRecordError, path: Path, line: int, journey: Journey, zone: ZoneInfo
) -> ContactData:
    if isinstance(raw, ImportRecordError):
        raise raw
    try:
        return contact_data(ContactRecord.model_validate(raw), journey, zone)
    except ValidationError as exc:
        raise ImportRecordError(str(path), line, _reason(exc)) from exc
    except ValueError as exc:
        raise ImportRecordError(str(path), line, str(exc)) from exc


def _flush_contacts(store: Store, batch: dict[str, ContactData], now: datetime, first_stage: str) -> int:
    if not batch:
        return 0
    with store.session() as session:
        contact_store.upsert(session, list(batch.values()), now, first_stage)
    count = len(batch)
    batch.clear()
    return count


def event_key(record: EventRecord) -> str:
    """The sender's id, or a hash of the whole event so an identical line is stored once."""
    if record.id:
        return record.id
    canonical = json.dumps(
        [record.type, record.email, record.at.isoformat(), record.properties],
        sort_keys=True,
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def import_events(store: Store, path: Path, journey: Journey, now: datetime) -> ImportReport:
    report = ImportReport()
    records = (_event(raw, path, line, report) for line, raw in read_records(path))
    for batch in _batches((record for record in records if record is not None), BATCH):
        with store.session() as session:
            new = event_store.add(session, batch, journey, now)
        report.imported += new
        report.duplicates += len(batch) - new
    return report


def _event(
    raw: dict[str, Any] | ImportRecordError, path: Path, line: int, report: ImportReport
) -> EventData | None:
    report.read += 1
    if isinstance(raw, ImportRecordError):
        report.errors.append(raw)
        return None
    try:
        record = EventRecord.model_validate(raw)
    except ValidationError as exc:
        report.errors.append(ImportRecordError(str(path), line, _reason(exc)))
        return None
    return EventData(
        key=event_key(record),
        type=record.type,
        email=record.email,
        at=record.at,
        properties=record.properties,
    )


def _batches(items: Iterable[EventData], size: int) -> Iterator[list[EventData]]:
    batch: list[EventData] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_coupon_codes(path: Path) -> tuple[list[str], list[ImportRecordError]]:
    """Codes from a CSV with a `code` column (or one code per line without a header)."""
    codes, errors = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    has_header = bool(rows) and rows[0] and rows[0][0].strip().lower() == "code"
    for number, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        code = row[0].strip() if row else ""
        if not code:
            continue
        if not code.replace("-", "").isalnum() or len(code) > 64:
            errors.append(ImportRecordError(str(path), number, f'"{code}" is not a coupon code'))
            continue
        codes.append(code)
    return codes, errors
