"""Options several commands share, and the parsing of their values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from automator.errors import AutomatorError
from automator.ids import MAX_ID

NowOption = Annotated[str | None, typer.Option("--now", help="Act as if it were this time (ISO 8601).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the message's history).")]
ActorOption = Annotated[str, typer.Option("--by", help="Who acts (kept in the history).")]
MessageId = Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The message's id.")]


def parse_now(value: str | None) -> datetime:
    """`--now` (ISO 8601; without an offset it is UTC), or the current time."""
    if value is None:
        return datetime.now(UTC)
    from automator.timestamps import parse_timestamp

    try:
        return parse_timestamp(value, UTC)
    except ValueError as exc:
        raise AutomatorError(f'--now "{value}" is not an ISO 8601 time, e.g. 2026-11-20T11:00:00Z') from exc


def email_address(value: str) -> str:
    """An email address as the store keeps it, or AutomatorError saying what is wrong with it."""
    from automator.importing import normalize_email

    try:
        return normalize_email(value)
    except ValueError as exc:
        raise AutomatorError(str(exc)) from exc
