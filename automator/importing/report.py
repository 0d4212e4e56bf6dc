"""What an import tells as it goes and when it is done: counts, rejected records, warnings.

The report keeps every rejected record and warning unless a `Watcher` takes them as they
come (the CLI prints them at once): a file with a million bad lines would otherwise be held
in memory whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from automator.errors import ImportRecordError


@dataclass(frozen=True)
class RecordWarning:
    """Something about a record that does not stop its import: a date that is not ISO 8601,
    a CSV row shorter than its header."""

    file: str
    record: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.record}: {self.message}"


class Watcher(Protocol):
    """Follows an import: how far into its file it is, and each problem as it is found."""

    def advanced(self, done: int, total: int) -> None:
        """`done` of the file's `total` bytes are read."""

    def rejected(self, error: ImportRecordError) -> None: ...

    def warned(self, warning: RecordWarning) -> None: ...

    def finishing(self, step: str) -> None:
        """The file is read and stored, and the load does `step` before it ends: a first
        load into an empty table builds its indexes then, for as long as the load is big.
        (Optional: an import tells it to the watchers that have it.)"""


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    merged: int = 0  # of those imported, contacts merged into an earlier record for their address
    rejected: int = 0
    warned: int = 0
    errors: list[ImportRecordError] = field(default_factory=list)  # unless a Watcher took them
    warnings: list[RecordWarning] = field(default_factory=list)  # likewise
    empty: str | None = None  # `contacts.csv: no records (only a header)`: the file held none


class Tally:
    """An import's report, and its watcher if it has one."""

    def __init__(self, watcher: Watcher | None) -> None:
        self.report = ImportReport()
        self._watcher = watcher

    def reject(self, error: ImportRecordError) -> None:
        self.report.rejected += 1
        if self._watcher is None:
            self.report.errors.append(error)
        else:
            self._watcher.rejected(error)

    def warn(self, warning: RecordWarning) -> None:
        self.report.warned += 1
        if self._watcher is None:
            self.report.warnings.append(warning)
        else:
            self._watcher.warned(warning)

    def advanced(self, done: int, total: int) -> None:
        if self._watcher is not None:
            self._watcher.advanced(done, total)

    def finishing(self, step: str) -> None:
        # A watcher written before it was told of this step goes on working without it.
        told = getattr(self._watcher, "finishing", None)
        if told is not None:
            told(step)

    def ended(self, path: Path, nothing: Callable[[], str]) -> ImportReport:
        """The report, saying so when the file held no record at all (`nothing` says what
        it held instead)."""
        if self.report.read == 0:
            self.report.empty = f"{path}: no records ({nothing()})"
        return self.report
