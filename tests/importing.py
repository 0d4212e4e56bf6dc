"""What the import tests share: files written as a user would save them, and what the store
holds afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from automator.importing import import_events
from automator.staged import EventCopy
from automator.store import Store
from automator.store import contacts as contact_store
from automator.store import events as event_store
from automator.tables import Contact, Event
from tests.conftest import cart, write_jsonl


def write_csv(path: Path, *rows: str) -> Path:
    """A CSV file of these lines (a header and rows), each ended by a line feed."""
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_raw(path: Path, text: str) -> Path:
    """A file holding exactly `text` (its line ends as they are)."""
    path.write_text(text, encoding="utf-8", newline="")
    return path


def cart_event(**fields: Any) -> dict[str, Any]:
    """A cart_updated event as a shop sends it; `fields` replace or add to its own."""
    return {
        "id": "evt-1",
        "type": "cart_updated",
        "email": "lan@example.com",
        "at": "2026-11-20T10:00:00+07:00",
        "properties": cart(),
        **fields,
    }


def contact(store: Store, email: str) -> Contact | None:
    with store.session() as session:
        return contact_store.by_email(session, email)


def stored_events(store: Store, email: str) -> list[Event]:
    """The contact's events, newest first ([] for no such contact)."""
    with store.session() as session:
        found = contact_store.by_email(session, email)
        return [] if found is None or found.id is None else event_store.for_contact(session, found.id)


def event_keys(store: Store, email: str) -> list[str]:
    return [event.key for event in stored_events(store, email)]


def import_failing_at_the_second_batch(store, project, tmp_path, monkeypatch) -> list[list[str]]:
    """Import ten events in batches of three (`small_batches`) with the second batch's store
    failing ("disk full"); the keys of each batch the store was given."""
    calls: list[list[str]] = []
    real = event_store.bulk_add

    def failing(session, batch, journey, now):
        calls.append(batch.keys if isinstance(batch, EventCopy) else [record.key for record in batch])
        if len(calls) == 2:
            raise OSError("disk full")
        return real(session, batch, journey, now)

    monkeypatch.setattr(event_store, "bulk_add", failing)
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id=f"e{n}") for n in range(10)])
    with pytest.raises(OSError, match="disk full"):
        import_events(store, path, project.journey, datetime(2026, 11, 20, 5, tzinfo=UTC))
    return calls
