"""The `automator` command line: check, import, tick, queue, preview.

One module per command group; this one makes the app and lists the commands in the order
`automator --help` shows them. A command imports the engine, the store and the web parts
when it runs, not when its module is imported: `automator --help` and `automator check`
would otherwise spend most of their time importing SQLAlchemy, FastAPI and the engine that
they never use (bench/startup.py measures it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automator.cli import (
    console,
    contacts,
    coupons,
    db,
    events,
    explain,
    keys,
    queue,
    report,
    rules,
    run,
    schema,
    secret,
    simulate,
    suppressions,
    users,
)
from automator.cli.output import command_group
from automator.cli.state import begin, make_transport

__all__ = ["app", "make_transport"]

app = command_group(
    help="Marketing automation rules engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    project: Annotated[Path, typer.Option("--project", "-p", help="Project folder.", file_okay=False)] = Path(
        "."
    ),
) -> None:
    """automator: rules in rules/, templates in email_templates/, settings in automator.toml."""
    ctx.call_on_close(begin(project).close)


app.command("check")(rules.check)
app.command("tick")(run.tick)
app.command("preview")(rules.preview_command)
app.command("simulate")(simulate.simulate_command)
app.command("explain")(explain.explain_command)
app.command("run")(run.run_daemon)
app.command("status")(run.status_command)
app.add_typer(rules.rules_app, name="rules")
app.command("schema")(schema.schema_command)
app.command("report")(report.report_command)
app.command("console")(console.console_command)
app.add_typer(contacts.app, name="contacts")
app.add_typer(events.app, name="events")
app.add_typer(suppressions.app, name="suppressions")
app.add_typer(coupons.app, name="coupons")
app.add_typer(queue.app, name="queue")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(secret.app, name="secret")
app.add_typer(db.app, name="db")
