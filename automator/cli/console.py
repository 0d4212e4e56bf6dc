"""`automator console`: the support console on its own, without the daemon."""

from __future__ import annotations

from typing import Annotated

import typer

from automator.cli.output import reports_errors
from automator.cli.state import state

# Where the console listens unless told, here and in `automator run --console`: a port of
# its own, so that the public unsubscribe port (`run --listen`, 8080 in the docs and the
# container image) can run beside it and never serves a login page.
HOST = "127.0.0.1"
PORT = 8081


@reports_errors
def console_command(
    host: Annotated[str, typer.Option(metavar="<address>", help="Address to listen on.")] = HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = PORT,
) -> None:
    """Serve the support console (users come from `automator users add`)."""
    import uvicorn

    from automator.config import require_secret
    from automator.console import create_app
    from automator.daemon import _bind, _join_host_port, configure_logging

    project = state().project
    require_secret(project.settings, "automator console signs logins with it")
    configure_logging("text")
    console_app = create_app(project, state().store)
    _warn_without_users()
    listener = _bind(host, port)
    typer.echo(f"console on http://{_join_host_port(host, listener.getsockname()[1])} (Ctrl-C stops it)")
    config = uvicorn.Config(console_app, log_config=None, server_header=False, access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


def _warn_without_users() -> None:
    """Say how to add a user when there is none: nobody could log in."""
    from automator.store import users

    with state().store.session() as session:
        if not users.listing(session):
            typer.echo("no console users yet: add one with `automator users add NAME --role admin`", err=True)
