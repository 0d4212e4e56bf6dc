"""Events and contacts that arrive over HTTP: each item validated as `events import` and
`contacts import` validate a record, the good ones stored in one transaction, the bad ones
answered with their index and what is wrong.

An event is stored once per id: the unique key on `event.key` decides, so a replay (or the
same event from two clients at once) is a duplicate, never a second row.

A daemon writes one request's items at a time (`Intake._turn`). On SQLite there is one
writer anyway, and requests wait for it here, each woken as the one before commits, rather
than in SQLite's busy handler, which sleeps and polls and let some wait seconds behind later
ones. On PostgreSQL, concurrent requests would make the same new contacts and lock the same
rows in different orders; within a daemon they no longer do, and a transaction that loses
such a race to another process (a second daemon, an import) is run again after a short,
random pause, and then finds what the other one stored.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from automator.importing import ContactRecord, EventRecord, contact_data, event_key, merged
from automator.importing.records import field_errors
from automator.journey import Journey
from automator.staged import ContactData, EventData
from automator.store import Store
from automator.store import contacts as contact_store
from automator.store import events as event_store

TRIES = 8
PAUSE = 0.02  # seconds: the longest pause before the second try, doubled before each next
RACES = ("40001", "40P01")  # PostgreSQL: serialization failure, deadlock
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an item: the field (empty for the item as a whole) and why."""

    field: str
    message: str


@dataclass
class Outcome:
    """What became of a request's items: stored, known already, or refused (by index)."""

    accepted: int = 0
    duplicates: int = 0
    merged: int = 0  # of the accepted contacts, those merged into an earlier item for their address
    rejected: dict[int, list[Problem]] = field(default_factory=dict)

    def reject(self, index: int, *problems: Problem) -> None:
        self.rejected.setdefault(index, []).extend(problems)

    def add(self, other: Outcome) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.merged += other.merged
        for index, problems in other.rejected.items():
            self.reject(index, *problems)

    def as_dict(self) -> dict[str, Any]:
        merged = {"merged": self.merged} if self.merged else {}
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            **merged,
            "rejected": [
                {"index": index, "errors": [{"field": p.field, "message": p.message} for p in problems]}
                for index, problems in sorted(self.rejected.items())
            ],
        }


class Intake:
    """Validates and stores items for one project's journey and time zone."""

    def __init__(self, store: Store, journey: Journey, zone: ZoneInfo) -> None:
        self.store = store
        self.journey = journey
        self.zone = zone
        self._turn = threading.Lock()  # one request's write at a time (see the module)

    def events(self, items: Sequence[tuple[int, Any]], now: datetime) -> Outcome:
        """(index, event) pairs: the valid ones stored once per id."""
        outcome, records = Outcome(), []
        for index, item in items:
            try:
                records.append(_event(item))
            except ValidationError as exc:
                outcome.reject(index, *problems_of(exc))
            except ValueError as exc:
                outcome.reject(index, _problem(str(exc)))
        if records:
            # Sorted (stable, so the first of a repeated id stays first): concurrent requests
            # take their rows' locks in one order and never wait on each other in a circle.
            records.sort(key=lambda record: record.key)
            new = self._retrying(lambda session: event_store.add(session, records, self.journey, now))
            outcome.accepted, outcome.duplicates = new, len(records) - new
        return outcome

    def contacts(self, items: Sequence[tuple[int, Any]], now: datetime) -> Outcome:
        """(index, contact) pairs: the valid ones upserted by email, a later one for the same
        address merged into an earlier one (its fields winning), as in an import."""
        outcome, by_email = Outcome(), dict[str, ContactData]()
        for index, item in items:
            try:
                data = self._contact(item)
            except ValidationError as exc:
                outcome.reject(index, *problems_of(exc))
                continue
            except ValueError as exc:
                outcome.reject(index, _problem(str(exc)))
                continue
            if (earlier := by_email.get(data.email)) is not None:
                data = merged(earlier, data)
                outcome.merged += 1
            by_email[data.email] = data
            outcome.accepted += 1
        if by_email:
            records = [by_email[email] for email in sorted(by_email)]
            first = self.journey.first_stage
            self._retrying(lambda session: contact_store.upsert(session, records, now, first))
        return outcome

    def _contact(self, item: Any) -> ContactData:
        if not isinstance(item, dict):
            raise ValueError("a contact is a JSON object")
        return contact_data(ContactRecord.model_validate(item), self.journey, self.zone)

    def _retrying(self, write: Callable[[Session], T]) -> T:
        """Run `write` in a write transaction; again when it lost a race (see the module)."""
        for attempt in range(1, TRIES + 1):
            try:
                with self._turn, self.store.transaction() as session:
                    return write(session)
            except DBAPIError as exc:
                lost = isinstance(exc, IntegrityError) or getattr(exc.orig, "sqlstate", None) in RACES
                if not lost or attempt == TRIES:
                    raise
                time.sleep(random.uniform(0, PAUSE * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")


def _event(item: Any) -> EventData:
    if not isinstance(item, dict):
        raise ValueError("an event is a JSON object")
    record = EventRecord.model_validate(item)
    return EventData(event_key(record), record.type, record.email, record.at, record.properties)


def problems_of(exc: ValidationError) -> list[Problem]:
    """A model's errors by field. The check of a whole record for control characters names
    each field in its one message (`first_name: holds a line break (\\n); what may be held`):
    each is answered as its field's, with what may be held."""
    found = []
    for where, message in field_errors(exc):
        parts = message.split("; ")
        named = [_problem(part) for part in parts[:-1]]
        if where or not named or not all(problem.field for problem in named):
            found.append(Problem(where, message))
            continue
        found.extend(Problem(problem.field, f"{problem.message}: {parts[-1]}") for problem in named)
    return found


def _problem(text: str) -> Problem:
    """`stage: unknown stage "x"` → field `stage`; a message without a field name is the item's."""
    head, separator, rest = text.partition(": ")
    if separator and head.replace("_", "").replace(".", "").isalnum():
        return Problem(head, rest)
    return Problem("", text)
