"""`automator events import`: events from a file, each stored once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automator.cli.options import NowOption, parse_now
from automator.cli.output import command_group, print_import, reports_errors
from automator.cli.state import state

app = command_group("Import events.", no_args_is_help=True)


@app.command("import")
@reports_errors
def events_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], now: NowOption = None
) -> None:
    """Import events from a .jsonl, .json or .csv file (other columns are properties); an
    event id seen before is stored once."""
    from automator.cli.progress import import_progress
    from automator.importing import import_events

    journey, store, at = state().project.journey, state().store, parse_now(now)
    with import_progress(file, "events") as watcher:
        report = import_events(store, file, journey, at, watcher)
    print_import(report, "events")
