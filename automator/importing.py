"""Import contacts (CSV or JSONL) and events (JSONL).

Each record is validated on its own: a bad one is reported with its line number and reason,
and every good one is still imported.

No imported text may hold a control character (C0, DEL, C1; tab, CR and LF included):
names, emails and attributes end up in subject lines, headers and the terminal, where a line
break or an ESC sequence would let a record's text pose as something else. The one
exception is the value of an event property, which may be multi-line text (an address, a
note) and so may hold tabs and line breaks, though no other control character.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from enum import Enum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from automator.display import CONTROL, escape, printable
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


_ANY_CONTROL = re.compile(f"[{CONTROL}]+")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")  # tab, LF and CR pass


def _control_characters(value: Any, where: str = "", lines: bool = False) -> Iterator[tuple[str, str]]:
    """(field, first run of control characters, at most 8 of them) for each string in
    `value` that holds one. Nested lists and objects are searched too, and the names of
    their keys; with `lines`, strings (not names) may hold tabs and line breaks."""
    if isinstance(value, str):
        if found := (_CONTROL_BUT_LINES if lines else _ANY_CONTROL).search(value):
            yield where, found.group()[:8]
    elif isinstance(value, dict) and not _all_clean_strings(value):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if found := _ANY_CONTROL.search(str(key)):
                yield f"{inner} (its name)", found.group()[:8]
            yield from _control_characters(item, inner, lines)
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from _control_characters(item, f"{where}.{number}", lines)


def _all_clean_strings(value: dict[Any, Any]) -> bool:
    """Whether an object's keys and values are all strings without a control character:
    one search for a whole CSV row rather than one per string."""
    try:
        return not _ANY_CONTROL.search("".join([*value, *value.values()]))
    except TypeError:  # a number, a list, an object: searched one by one
        return False


def _refuse_control_characters(found: Iterable[tuple[str, str]], rule: str) -> None:
    """Raise one ValueError naming every field that holds a control character, and the rule."""
    problems = [f"{printable(where)}: holds {_kind(run)} ({escape(run)})" for where, run in found]
    if problems:
        raise ValueError("; ".join([*problems, rule]))


def _kind(run: str) -> str:
    if not run.strip("\r\n"):
        return "a line break"
    return "a tab" if not run.strip("\t") else "a control character"


class ContactRecord(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: str
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    stage: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        _refuse_control_characters(
            _control_characters(data),
            "a contact's fields and attributes may not hold line breaks, tabs or other control characters",
        )
        return data

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

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        """Property values may be multi-line text (an address, a note); nothing else may."""
        if isinstance(data, dict):
            fields = {key: value for key, value in data.items() if key != "properties"}
            _refuse_control_characters(
                [
                    *_control_characters(fields),
                    *_control_characters(data.get("properties"), "properties", lines=True),
                ],
                "an event's fields and property names may not hold control characters, "
                "its property values no others than tabs and line breaks",
            )
        return data

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
    """Each row after the header as a dict of its non-empty values, by the record's first line."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header: list[str] | None = None
        for line, row in _csv_rows(path, _Lines(handle)):
            if header is None:
                if isinstance(row, ImportRecordError):
                    raise AutomatorError(f"{row.file}:{row.record}: the header row: {row.message}")
                header = [name.strip() for name in row]
            elif isinstance(row, ImportRecordError):
                yield line, row
            elif len(row) > len(header):
                yield line, ImportRecordError(str(path), line, "more values than header columns")
            else:
                yield line, {key: value for key, value in zip(header, row, strict=False) if key and value}


def _csv_rows(path: Path, lines: _Lines) -> Iterator[tuple[int, list[str] | ImportRecordError]]:
    """(first line, values) for each record that is not blank. A record the csv module
    refuses (a field over its size limit) is an error, and reading goes on after its end."""
    reader = csv.reader(lines)
    while True:
        lines.start_record()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.skip_rest_of_record()
            yield lines.first, ImportRecordError(str(path), lines.first, _csv_problem(exc))
            continue
        if row:
            yield lines.first, row


def _csv_problem(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"field larger than {csv.field_size_limit()} characters"
    return f"not valid CSV: {exc}"


class _Lines:
    """A CSV file's physical lines as the csv reader takes them: numbered, and those of the
    record being read kept, so that a record the reader gives up on can be skipped to its end.

    The reader stops in the middle of a record when a field passes its size limit, and reads
    on from the next line as if a record started there. If the field is quoted and runs on
    for more lines, those lines are its text, not records: a file exported from a shop, with
    a customer's text in a quoted field, would otherwise have that text imported as contacts.
    """

    def __init__(self, handle: Iterator[str]) -> None:
        self._handle = handle
        self.number = 0  # lines read so far
        self.first = 1  # the current record's first line
        self._record: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self.number += 1
        self._record.append(line)
        return line

    def start_record(self) -> None:
        self.first = self.number + 1
        self._record = []

    def skip_rest_of_record(self) -> None:
        """Read on to the end of the current record, which may lie lines further down."""
        state = _CsvState.START
        for line in self._record:
            state = _csv_state_after(line, state)
        while state is not _CsvState.START:
            following = next(self._handle, None)
            if following is None:
                return
            self.number += 1
            state = _csv_state_after(following, state)


class _CsvState(Enum):
    START = "start of a field"
    FIELD = "in an unquoted field"
    QUOTED = "in a quoted field"
    QUOTE_IN_QUOTED = "after a quote in a quoted field (it ends there, or doubles the quote)"


_CSV_TOKEN = re.compile(r'[",\r\n]|[^",\r\n]+')


def _csv_state_after(line: str, state: _CsvState) -> _CsvState:
    """Where the csv module's reader (default dialect) is after `line`: at START after the
    end of a record. Only quotes, commas and line ends move it; a quote opens a quoted field
    at the start of a field only, and is plain text inside an unquoted one."""
    for found in _CSV_TOKEN.finditer(line):
        token = found.group()
        if state is _CsvState.QUOTED:
            state = _CsvState.QUOTE_IN_QUOTED if token == '"' else _CsvState.QUOTED
        elif token == '"' and state in (_CsvState.START, _CsvState.QUOTE_IN_QUOTED):
            state = _CsvState.QUOTED  # opens a quoted field, or doubles a quote inside one
        elif token in (",", "\r", "\n"):
            state = _CsvState.START
        else:
            state = _CsvState.FIELD
    return state


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
