"""`automator db …`: the database's schema, which Alembic owns (see automator.store.schema)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from automator.cli.output import command_group, reports_errors, say
from automator.cli.state import state
from automator.errors import AutomatorError

if TYPE_CHECKING:
    from automator.store import Store

app = command_group("The database's schema: upgrade it, see its revision.", no_args_is_help=True)


@contextmanager
def _unprepared() -> Iterator[Store]:
    """The project's database as it is: these commands look at or change an old schema,
    which every other command refuses."""
    from automator.store import Store

    store = Store(state().project.settings.database)
    try:
        yield store
    finally:
        store.dispose()


@app.command("upgrade")
@reports_errors
def db_upgrade() -> None:
    """Bring the schema to the newest revision (back the database up first)."""
    with _unprepared() as store:
        before, after = store.upgrade_schema()
    if before == after:
        say(f"the schema is at the newest revision already ({after})")
    elif before is None:
        say(f"made the schema at revision {after}")
    else:
        say(f"upgraded the schema from revision {before} to {after}")


@app.command("current")
@reports_errors
def db_current() -> None:
    """The schema's revision, and whether an upgrade is waiting: exit code 1 when this
    automator cannot run on it (behind, or made by a newer release), so a deploy script can
    stop there."""
    from automator.store import schema

    with _unprepared() as store, store.connect() as connection:
        revision = schema.revision_of(connection)
    if revision.current is None:
        say(f"no schema yet (any command makes it at {revision.head})")
    elif revision.up_to_date:
        say(f"{revision.current} (the newest)")
    elif revision.ahead:
        say(f"{revision.current} (newer than this automator's {revision.head}: run the release that made it)")
        raise typer.Exit(1)
    else:
        say(f"{revision.current} (behind {revision.head}: run `automator db upgrade`)")
        raise typer.Exit(1)


@app.command("history")
@reports_errors
def db_history() -> None:
    """Every revision, the newest first, with what it changes; the database's is marked
    (current). The revisions ship with automator: they are listed without a database too."""
    from automator.store import schema

    try:
        with _unprepared() as store, store.connect() as connection:
            current = schema.revision_of(connection).current
    except AutomatorError as exc:
        say(f"warning: no revision marked (current): {exc}", err=True)
        current = None
    for revision, summary in schema.history():
        say(f"{revision}  {summary}" + ("  (current)" if revision == current else ""))
