"""What a rule's lookup finds: due trigger occurrences (`Candidate`) with what their messages
need of the contact (`Addressee`), and the mark a rule's lookups start from (`Watermark`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Watermark:
    """What the previous tick of a rule covered: send times up to `until`, rows up to `seq`,
    contact changes before position `changes` (see `automator.store.changes`)."""

    until: datetime
    seq: int
    changes: int = 0


@dataclass(frozen=True, slots=True)
class Addressee:
    """A candidate's contact, as far as queueing and its templates go; read by the lookup
    that found the candidate, which reads the contact's row anyway."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    locale: str | None
    timezone: str | None
    stage: str | None
    attributes: dict[str, Any] | str  # the JSON text as stored, on SQLite


@dataclass(frozen=True, slots=True)
class Candidate:
    contact: Addressee
    occurrence: str
    occurred_at: datetime
    event_id: int | None
    suppressed: bool
    # The triggering event's properties (event rules): like `attributes`, as stored.
    properties: dict[str, Any] | str | None = None
    step: int = 1  # of the rule's journey
    due_at: datetime | None = None  # when not the occurrence plus the rule's offset (a later step)
    skip: str | None = None  # why its step is skipped (its `when` did not hold): see store.steps

    @property
    def contact_id(self) -> int:
        return self.contact.id

    @property
    def email(self) -> str:
        return self.contact.email


def addressee(row: Any) -> Addressee:
    """A candidate's contact from a lookup's row (its columns as `_addressee` names them)."""
    return Addressee(
        row.contact_id,
        row.email,
        row.first_name,
        row.last_name,
        row.locale,
        row.timezone,
        row.stage,
        row.attributes,
    )
