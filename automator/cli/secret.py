"""`automator secret generate`: a secret for signing unsubscribe links and console logins."""

from __future__ import annotations

import typer

from automator.cli.output import command_group

app = command_group("The secret that signs unsubscribe links and console logins.", no_args_is_help=True)


@app.command("generate")
def secret_generate() -> None:
    """Print a new random secret (32 bytes as hex), for AUTOMATOR_SECRET or `secret` in automator.toml."""
    import secrets

    typer.echo(secrets.token_hex(32))
