"""Import contacts (CSV or JSONL) and events (JSONL) from files, in bulk.

Each record is validated on its own: a bad one is reported with its file, line and reason,
and every good one is still imported. Files are read as streams and stored in batches, so
memory does not grow with the file.

`records` says what a valid record is (the pydantic models are the reference); `screening`
takes plainly valid records past the models quickly; `files` reads CSV, JSON Lines and JSON
arrays (`json_arrays` finds an array's items); `contacts` and `events` run the imports, with
`overlap` storing a batch while the next is read and `seen` keeping the contacts written;
`report` counts and passes on what was found.

The names below are imported when first asked for: an import's reading process imports
this package, and would otherwise import the store and the database's libraries too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automator.importing.contacts import contact_data, import_contacts, merged
    from automator.importing.events import event_key, import_events
    from automator.importing.files import read_coupon_codes
    from automator.importing.records import ContactRecord, EventRecord, normalize_email, parse_timestamp
    from automator.importing.report import ImportReport, RecordWarning, Watcher

_HOMES = {
    "contact_data": "contacts",
    "import_contacts": "contacts",
    "merged": "contacts",
    "event_key": "events",
    "import_events": "events",
    "read_coupon_codes": "files",
    "ContactRecord": "records",
    "EventRecord": "records",
    "normalize_email": "records",
    "parse_timestamp": "records",
    "ImportReport": "report",
    "RecordWarning": "report",
    "Watcher": "report",
}

__all__ = [
    "ContactRecord",
    "EventRecord",
    "ImportReport",
    "RecordWarning",
    "Watcher",
    "contact_data",
    "event_key",
    "import_contacts",
    "import_events",
    "merged",
    "normalize_email",
    "parse_timestamp",
    "read_coupon_codes",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
