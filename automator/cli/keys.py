"""`automator keys …`: API keys for the HTTP API (`automator run --listen`), each with scopes.

A key is printed once, when it is made; the store keeps only its hash. Every change is
recorded in the audit log with who made it (`--by`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

import typer

from automator.cli.options import ActorOption
from automator.cli.output import command_group, reports_errors, say, say_columns
from automator.cli.state import state
from automator.errors import AutomatorError, NotFoundError

app = command_group("API keys for the HTTP API.", no_args_is_help=True)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SCOPES_HELP = "events:write, contacts:write or contacts:erase; repeat for several"


@app.command("create")
@reports_errors
def keys_create(
    name: str,
    scope: Annotated[list[str], typer.Option("--scope", metavar="<scope>", help=SCOPES_HELP)],
    by: ActorOption = "cli",
) -> None:
    """Make a key with these scopes; it is printed once, alone on the last line."""
    from automator.api.keys import SCOPES, hash_of, new_key
    from automator.store import api_keys, audit

    if not NAME.match(name):
        raise AutomatorError("a key's name has 1 to 100 letters, digits, dots, dashes or underscores")
    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        raise AutomatorError(f"unknown scope {', '.join(unknown)} (scopes: {', '.join(SCOPES)})")
    scopes = sorted(set(scope))
    key, now = new_key(), datetime.now(UTC)
    with state().store.session() as session:
        if not api_keys.add(session, name, hash_of(key), scopes, now):
            raise AutomatorError(f"there is already a key named {name} (revoked keys keep their names)")
        audit.record(session, now, by, "create api key", f"{name} ({', '.join(scopes)})")
    say(f"created the key {name} ({', '.join(scopes)}); it is shown this once, keep it secret:")
    typer.echo(key)


@app.command("list")
@reports_errors
def keys_list() -> None:
    """Every key: name, scopes, when it was made, last used (to the minute) and revoked."""
    from automator.store import api_keys

    with state().store.session() as session:
        rows = api_keys.listing(session)
    say_columns("name", "scopes", "created", "last used", "revoked")
    for key in rows:
        revoked = _when(key.revoked_at) if key.revoked_at else "-"
        say_columns(key.name, ",".join(key.scopes), _when(key.created_at), _when(key.last_used_at), revoked)
    typer.echo(f"{len(rows)} key{'' if len(rows) == 1 else 's'}")


@app.command("revoke")
@reports_errors
def keys_revoke(name: str, by: ActorOption = "cli") -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from automator.store import api_keys, audit

    now = datetime.now(UTC)
    with state().store.session() as session:
        if not api_keys.revoke(session, name, now):
            names = [key.name for key in api_keys.listing(session) if key.revoked_at is None]
            raise NotFoundError(f"no key in use named {name} (keys in use: {', '.join(names) or 'none'})")
        audit.record(session, now, by, "revoke api key", name)
    say(f"revoked the key {name}")


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M}Z" if at else "never"
