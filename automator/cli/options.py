"""Options several commands share, and the parsing of their values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from automator.errors import AutomatorError
from automator.ids import MAX_ID

NowOption = Annotated[
    str | None, typer.Option("--now", metavar="<time>", help="Act as if it were this time (ISO 8601).")
]
ReasonOption = Annotated[
    str, typer.Option("--reason", metavar="<text>", help="Why (kept in the message's history).")
]
ActorOption = Annotated[str, typer.Option("--by", metavar="<name>", help="Who acts (kept in the history).")]


def _message_id(value: int) -> int:
    """A message id as the store can hold one (a 64-bit integer from 1), checked here rather
    than by a range that the help would print as `[1<=x<=9223372036854775807]`."""
    if not 1 <= value <= MAX_ID:
        raise typer.BadParameter(
            f"{value} is no message id: they are numbers from 1 (`automator queue list`)"
        )
    return value


def how_many(value: int) -> int:
    """A count of rows to show: from 1 to what the database can count."""
    if not 1 <= value <= MAX_ID:
        raise typer.BadParameter(f"{value} is not a number of rows from 1")
    return value


MessageId = Annotated[
    int, typer.Argument(metavar="ID", callback=_message_id, help="The message's number.", show_default=False)
]


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
