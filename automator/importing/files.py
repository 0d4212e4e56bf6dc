"""Import files read record by record: CSV with a header row, JSON Lines, a JSON array of
objects, and coupon codes.

A file is read as a stream, never whole, so that an import's memory does not grow with its
file; `RecordFile.done` says how far it has got (for a progress bar).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Collection, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

from automator.errors import AutomatorError, ImportRecordError
from automator.importing.json_arrays import ArrayItems
from automator.importing.records import all_clean_strings, email_alias, field_key
from automator.importing.report import RecordWarning

# (line number, record or the error that stands for it, whether the record can hold no
# control character at all: the quick path may then skip looking for one).
Record = tuple[int, dict[str, Any] | ImportRecordError, bool]


class RecordFile:
    """A .csv, .jsonl or .json file open for reading, record by record; `warn` hears of a CSV
    row shorter than its header. A .json file that starts with `[` is one array of records
    (as an export writes it, over many lines), any other JSON file a record per line. A CSV header's
    column named as one of `fields` but for case, spaces or hyphens (`Email`, `First Name`)
    is that field, as a spreadsheet or a shop's export names it."""

    def __init__(
        self, path: Path, warn: Callable[[RecordWarning], None] | None = None, fields: Collection[str] = ()
    ) -> None:
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
            raise AutomatorError(f"{path}: use a .csv (with a header row), .jsonl or .json file")
        self.path = path
        self.size = path.stat().st_size
        self._warn = warn
        self._fields = {field_key(name): name for name in fields}
        self._csv = suffix == ".csv"
        self._json = suffix == ".json"  # JSON Lines, or one array of records
        # JSON Lines are decoded from their bytes (orjson checks that they are UTF-8);
        # CSV and a JSON array are read as text, through `_text`.
        self._bytes: BinaryIO = path.open("rb")
        self._wrapper: TextIO | None = None

    def _text(self) -> TextIO:
        """The file as text from its start. Bytes that are not UTF-8 are read as lone
        surrogates (`surrogateescape`), so that reading goes on, and the record that holds
        them is refused (`not_utf8`); a byte order mark is no part of the first record."""
        self._bytes.seek(0)
        newline = "" if self._csv else None
        # Kept here: a wrapper closes the file when it is collected.
        self._wrapper = io.TextIOWrapper(self._bytes, "utf-8-sig", "surrogateescape", newline)
        return self._wrapper

    def __enter__(self) -> RecordFile:
        return self

    def __exit__(self, *_: object) -> None:
        self._bytes.close()

    @property
    def is_csv(self) -> bool:
        return self._csv

    @property
    def done(self) -> int:
        """Bytes read so far (read ahead by a buffer's length)."""
        return 0 if self._bytes.closed else self._bytes.tell()

    def nothing(self) -> str:
        """What the file holds instead of records, when it holds none: said to whoever
        expected some (a cron job's export that came out empty)."""
        if self.size == 0:
            return "the file is empty"
        first = _first_character(self._bytes)
        if not first:
            return "only white space"
        if self._csv:
            return "only a header"
        return "an empty JSON array" if self._json and first == "[" else "only white space"

    def __iter__(self) -> Iterator[Record]:
        if self._csv:
            return _csv_records(self.path, self._text(), self._warn, self._fields)
        if self._json and _first_character(self._bytes) == "[":
            return _array_records(self.path, self._text())
        return _jsonl_records(self.path, self._bytes)


def _csv_records(
    path: Path, handle: TextIO, warn: Callable[[RecordWarning], None] | None, fields: dict[str, str]
) -> Iterator[Record]:
    """Each row after the header as a dict of its non-empty values, by the record's first line.
    A row longer than the header, or with a value under a column the header leaves unnamed,
    is refused: those values belong to no column, and dropping them would lose their data.
    A shorter one is read with the missing columns empty, and `warn` hears of it: a field
    left out in the middle shifts the others."""
    header: list[str] | None = None
    unnamed: list[int] = []
    for line, row in _csv_rows(path, _Lines(handle)):
        if header is None:
            if isinstance(row, ImportRecordError):
                raise AutomatorError(f"{row.file}:{row.record}: the header row: {row.message}")
            header = [fields.get(field_key(name), name.strip()) for name in row]
            unnamed = [column for column, name in enumerate(header) if not name]
            if twice := sorted({name for name in header if name and header.count(name) > 1}):
                raise AutomatorError(f"{path}:{line}: the header row names {', '.join(twice)} twice")
            if "email" in fields.values():
                header = _email_named(path, line, row, header)
        elif isinstance(row, ImportRecordError):
            yield line, row, False
        elif len(row) > len(header):
            problem = f"{_row_against(row, header)}; the ones past it belong to no column"
            yield line, ImportRecordError(str(path), line, problem), False
        elif filled := [column + 1 for column in unnamed if column < len(row) and row[column]]:
            problem = f"a value in column {filled[0]}, which the header row leaves without a name"
            yield line, ImportRecordError(str(path), line, problem), False
        else:
            if len(row) < len(header) and warn is not None:
                warn(
                    RecordWarning(str(path), line, f"{_row_against(row, header)}; the missing ones are empty")
                )
            record = {key: value for key, value in zip(header, row, strict=False) if key and value}
            yield line, record, all_clean_strings(record)


def _email_named(path: Path, line: int, row: list[str], header: list[str]) -> list[str]:
    """The header with its one address column named otherwise (`E-mail`, `Email Address`)
    taken as `email`, when none is named so (`records.email_alias`)."""
    try:
        alias = email_alias(row)
    except ValueError as exc:
        raise AutomatorError(f"{path}:{line}: the header row: {exc}") from None
    return [("email" if given == alias else name) for given, name in zip(row, header, strict=True)]


def _row_against(row: list[str], header: list[str]) -> str:
    """`2 fields where the header has 4 columns`."""
    fields, columns = len(row), len(header)
    return (
        f"{fields} field{'' if fields == 1 else 's'} where the header has "
        f"{columns} column{'' if columns == 1 else 's'}"
    )


def _csv_rows(path: Path, lines: _Lines) -> Iterator[tuple[int, list[str] | ImportRecordError]]:
    """(first line, values) for each record that is not blank. A record the csv module
    refuses (a field over its size limit), or one with bytes that are not UTF-8, is an
    error, and reading goes on after its end."""
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
        if lines.undecodable is not None:
            yield lines.first, ImportRecordError(str(path), lines.first, lines.undecodable)
        elif row:
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
        self.undecodable: str | None = None  # why the current record is not UTF-8 text

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self.number += 1
        self._record.append(line)
        if self.undecodable is None:
            self.undecodable = not_utf8(line)
        return line

    def start_record(self) -> None:
        self.first = self.number + 1
        self._record = []
        self.undecodable = None

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


# What a control character can look like in a line of JSON: a JSON parser refuses C0 raw in a
# string, so it is escaped there (\n, \u001b); DEL and C1 may be raw or escaped. A line
# without any of these holds no control character once decoded. (An escaped backslash
# before an `n` matches too: such a line is merely looked at closer.)
# In UTF-8, C1 is \xc2\x80 to \xc2\x9f.
_CONTROL = re.compile(rb"\\[bfnrt]|\\u00[0189][0-9a-fA-F]|\\u007[fF]|\x7f|\xc2[\x80-\x9f]")


def _may_hold_control(text: bytes) -> bool:
    """Whether a line of JSON (its UTF-8) may decode to text with a control character in it
    (the cheap tests first: most lines have no backslash, many are ASCII)."""
    if b"\\" not in text and text.isascii():
        return b"\x7f" in text
    return _CONTROL.search(text) is not None


# A run of 19 digits: orjson reads an integer beyond 64 bits (from -9223372036854775809
# down, or 18446744073709551616 up) as a float. A line's bytes are translated, each digit
# to "0" and every other byte to ".", and searched for nineteen "0"s: a third of the time
# of a regular expression's search, which took longer than orjson's decoding of the line.
_DIGITS_TO_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
_LONG_RUN = b"0" * 19


def _has_long_number(text: str | bytes) -> bool:
    """Whether `text` holds a run of 19 digits (no byte of a character beyond ASCII is one)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return _LONG_RUN in raw.translate(_DIGITS_TO_ZEROS)


_UNDECODED = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as surrogateescape reads it


def not_utf8(text: str) -> str | None:
    """Why a line read with `surrogateescape` is not UTF-8 text (its first such byte), or None."""
    if text.isascii() or (found := _UNDECODED.search(text)) is None:
        return None
    return f"not UTF-8 text: byte 0x{ord(found.group()) - 0xDC00:02x} at character {found.start() + 1}"


MAX_DEPTH = 32  # lists and objects inside each other: an event's properties need a few


def decoded_json(text: str | bytes) -> Any:
    """JSON text (a line of a file, a request's body), decoded by orjson: a few times
    faster than the standard library, and stricter (it refuses NaN, Infinity, lone
    surrogates and a number too large for a double, as PostgreSQL's json does). Text that
    holds a long run of digits is decoded again by the standard library, which keeps an
    integer beyond 64 bits exact. Raises `json.JSONDecodeError` (orjson's is a subclass),
    also for values nested deeper than MAX_DEPTH, which every later step would have to
    walk (the standard library's encoder by recursion)."""
    data = orjson.loads(text)
    if _has_long_number(text):
        try:
            data = json.loads(text)
        except ValueError as exc:  # an integer of more digits than Python converts
            raise json.JSONDecodeError(str(exc), str(text), 0) from exc
    opened = (
        text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
    )
    if opened > MAX_DEPTH and _depth_over(data, MAX_DEPTH):
        raise json.JSONDecodeError(f"lists and objects nested more than {MAX_DEPTH} deep", str(text)[:80], 0)
    return data


def _depth_over(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep in `value` (without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        inner = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if inner is None:
            continue
        if depth > limit:
            return True
        pending.extend((each, depth + 1) for each in inner if isinstance(each, dict | list))
    return False


def _jsonl_records(path: Path, handle: BinaryIO) -> Iterator[Record]:
    """Each line's record. A line that orjson decodes to an object, without a long number or
    deep nesting to look at closer, is taken as it is: one decoding of its bytes, no text
    made of them first. Any other goes the whole way (`_json_record`), which says what is
    wrong with it."""
    loads, error = orjson.loads, orjson.JSONDecodeError
    for line, raw in enumerate(handle, start=1):
        try:
            data = loads(raw if line > 1 else raw.removeprefix(codecs.BOM_UTF8))
        except error:
            data = None
        if (
            type(data) is dict
            and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH
            and not _has_long_number(raw)
        ):
            yield line, data, not _may_hold_control(raw)
            continue
        text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff" if line == 1 else "")
        if text and not text.isspace():
            yield _json_record(path, line, text, "each line must be a JSON object")


def _json_record(path: Path, line: int, text: str, shape: str) -> Record:
    """The record that `text` (a line, or an item of an array) holds, or why it holds none."""
    if (undecodable := not_utf8(text)) is not None:
        return line, ImportRecordError(str(path), line, undecodable), False
    try:
        data = decoded_json(text)
    except json.JSONDecodeError as exc:
        return line, ImportRecordError(str(path), line, _json_problem(text, exc)), False
    if not isinstance(data, dict):
        return line, ImportRecordError(str(path), line, shape), False
    return line, data, not _may_hold_control(text.encode("utf-8", "surrogatepass"))


_NOT_SPACE = re.compile(rb"[^ \t\r\n]")  # JSON's white space is these four


def _first_character(handle: BinaryIO) -> str:
    """The file's first character that is not white space ('' for none; of one beyond
    ASCII, its first byte), after a byte order mark; the file is read again from its start
    afterwards."""
    handle.seek(0)
    try:
        chunk = handle.read(4096).removeprefix(codecs.BOM_UTF8)
        while chunk:
            if found := _NOT_SPACE.search(chunk):
                return found.group().decode("latin-1")
            chunk = handle.read(4096)
        return ""
    finally:
        handle.seek(0)


def _array_records(path: Path, handle: TextIO) -> Iterator[Record]:
    """Each item of the JSON array the file holds, by the line it starts on. The whole array
    is read through once first: one whose text breaks off (a missing comma, a file cut
    short) is refused before any record is imported, since where its next record starts
    cannot be known, and importing the ones before would leave the rest behind unsaid."""
    for _ in ArrayItems(path, handle):
        pass
    handle.seek(0)
    for line, text in ArrayItems(path, handle):
        yield _json_record(path, line, text, "each item of the array must be a JSON object")


def _json_problem(text: str, exc: json.JSONDecodeError) -> str:
    """Why a line is not JSON. A comma after a whole object, left from a JSON array turned
    into lines, is named: the decoder's "unexpected content after document" does not say
    that the object itself is fine."""
    ended = text.rstrip()
    if ended.endswith(","):
        try:
            decoded_json(ended[:-1])
        except json.JSONDecodeError:
            pass
        else:
            return "a comma after the JSON value: a JSON Lines file holds one value per line, with no comma"
    return f"not valid JSON: {exc.msg}"


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
