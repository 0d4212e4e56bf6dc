"""`automator coupons …`: pools of codes that rules hand out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from automator.cli.options import parse_now
from automator.cli.output import command_group, reports_errors, say, say_columns
from automator.cli.state import state

app = command_group("Coupon pools.", no_args_is_help=True)


@app.command("import")
@reports_errors
def coupons_import(
    pool: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    percent_off: Annotated[int | None, typer.Option(help="Discount the codes give.")] = None,
    expires: Annotated[
        str | None, typer.Option(metavar="<time>", help="Expiry of the codes (ISO 8601).")
    ] = None,
) -> None:
    """Add coupon codes (a CSV with a `code` column) to a pool."""
    from automator.importing import read_coupon_codes
    from automator.store import coupons

    codes, errors = read_coupon_codes(file)
    for error in errors:
        say(f"rejected {error}", err=True)
    expires_at = parse_now(expires, "--expires") if expires else None
    with state().store.session() as session:
        added = coupons.import_pool(session, pool, codes, percent_off, expires_at, datetime.now(UTC))
    say(f"pool {pool}: added {added} codes, {len(codes) - added} already known, rejected {len(errors)}")
    if errors:
        raise typer.Exit(1)


@app.command("list")
@reports_errors
def coupons_list() -> None:
    """Free and taken codes per pool."""
    from automator.store import coupons

    with state().store.session() as session:
        counts = coupons.pool_counts(session)
    for pool, (free, taken) in sorted(counts.items()):
        say_columns(pool, f"free {free}", f"taken {taken}")
