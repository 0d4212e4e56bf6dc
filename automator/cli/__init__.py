"""The `automator` command line: check, import, tick, queue, preview.

One module per command group; this one makes the app and lists the commands in the order
`automator --help` shows them. A command imports the engine, the store and the web parts
when it runs, not when its module is imported: `automator --help` and `automator check`
would otherwise spend most of their time importing SQLAlchemy, FastAPI and the engine that
they never use (bench/startup.py measures it).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Annotated, Any

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


class _Automator(typer.Typer):
    """The `automator` app. Run as a program, it builds only the command it was asked for:
    before it parses anything, typer turns every command of the app into a click command and
    each option's type into a pydantic adapter, which `automator check` would otherwise pay
    for all the commands it does not run (bench/startup.py)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args or "args" in kwargs:
            return super().__call__(*args, **kwargs)
        # typer's own call on the lean copy: this method again would narrow it once more.
        return super(_Automator, _named(self, sys.argv[1:])).__call__(**kwargs)


def _named(whole: _Automator, argv: list[str]) -> _Automator:
    """The app with only the command or group that `argv` names, or the whole app when it
    names none (`--help`, a mistyped command: its error lists the commands)."""
    name = _command_name(argv)
    commands = [command for command in whole.registered_commands if command.name == name]
    groups = [group for group in whole.registered_groups if group.name == name]
    if not commands and not groups:
        return whole
    lean = copy.copy(whole)
    lean.registered_commands, lean.registered_groups = commands, groups
    return lean


def _command_name(argv: list[str]) -> str | None:
    """The first argument that is not the app's own `--project DIR`: the command's name, or
    None when an option of the app's comes first (`--help`)."""
    arguments = iter(argv)
    for argument in arguments:
        if argument in ("--project", "-p"):
            next(arguments, None)
        elif argument.startswith(("--project=", "-p")):
            continue
        else:
            return None if argument.startswith("-") else argument
    return None


app = command_group(
    "Marketing automation rules engine.",
    _Automator,
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
