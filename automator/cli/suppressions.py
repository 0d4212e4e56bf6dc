"""`automator suppressions …`: addresses that get nothing from any rule."""

from __future__ import annotations

from typing import Annotated

import typer

from automator.cli.options import NowOption, email_address, parse_now
from automator.cli.output import command_group, reports_errors, say, say_columns
from automator.cli.state import state
from automator.errors import AutomatorError, NotFoundError

app = command_group("Addresses that get nothing from any rule.", no_args_is_help=True)


@app.command("add")
@reports_errors
def suppressions_add(
    email: str,
    reason: Annotated[
        str, typer.Option(metavar="<reason>", help="unsubscribed, bounced, complained or blocked")
    ] = "blocked",
    note: Annotated[str, typer.Option(metavar="<text>", help="Free text kept with the suppression.")] = "",
    now: NowOption = None,
) -> None:
    """Suppress an address: no rule sends it anything."""
    from automator.store import suppressions

    if reason not in suppressions.REASONS:
        raise AutomatorError(f"--reason must be one of {', '.join(suppressions.REASONS)}")
    address = email_address(email)
    with state().store.session() as session:
        added = suppressions.add(session, address, reason, note, parse_now(now))
    say(f"suppressed {address} ({reason})" if added else f"{address} was already suppressed")


@app.command("remove")
@reports_errors
def suppressions_remove(email: str) -> None:
    """Allow mail to an address again."""
    from automator.store import suppressions

    address = email_address(email)
    with state().store.session() as session:
        if not suppressions.remove(session, address):
            raise NotFoundError(f"{address} is not suppressed")
    say(f"removed suppression of {address}")


@app.command("list")
@reports_errors
def suppressions_list() -> None:
    """Every suppressed address, newest first."""
    from automator.store import suppressions

    with state().store.session() as session:
        rows = suppressions.listing(session)
    for row in rows:
        say_columns(row.email, row.reason, row.created_at.isoformat(), row.note)
    typer.echo(f"{len(rows)} suppressed")
