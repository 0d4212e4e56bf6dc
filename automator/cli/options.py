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


# The years a time given on the command line may fall in: rules add delays and windows of
# up to a hundred years to it, and a time near the calendar's ends would run off it.
YEARS = (1900, 9000)


def parse_now(value: str | None, option: str = "--now") -> datetime:
    """`--now` (ISO 8601; without an offset it is UTC), or the current time."""
    if value is None:
        return datetime.now(UTC)
    from automator.timestamps import parse_timestamp

    try:
        moment = parse_timestamp(value, UTC)
    except ValueError as exc:
        example = "e.g. 2026-11-20T11:00:00Z"
        raise AutomatorError(f'{option} "{value}" is not an ISO 8601 time, {example}') from exc
    if not YEARS[0] <= moment.year < YEARS[1]:
        raise AutomatorError(f'{option} "{value}" is not between the years {YEARS[0]} and {YEARS[1]}')
    return moment


def email_address(value: str) -> str:
    """An email address as the store keeps it, or AutomatorError saying what is wrong with it."""
    from automator.importing import normalize_email

    try:
        return normalize_email(value)
    except ValueError as exc:
        raise AutomatorError(str(exc)) from exc


def seconds_between(value: float) -> float:
    """A daemon's interval: at least a tenth of a second (zero or less would spin), at most
    a day; `nan` and `inf` are no intervals either."""
    if not 0.1 <= value <= 86_400:
        raise typer.BadParameter(f"{value:g} is not between 0.1 and 86400 seconds")
    return value
