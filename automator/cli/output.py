"""What commands print: their help as plain text, text from the store or a file escaped so
that it cannot act on the terminal (automator/display.py), and an AutomatorError (or a
database locked by another process) as one line and exit code 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from automator.cli.state import locked
from automator.display import printable
from automator.errors import AutomatorError

if TYPE_CHECKING:
    from automator.importing import ImportReport

F = TypeVar("F", bound=Callable[..., Any])


def command_group(help: str, kind: type[typer.Typer] = typer.Typer, **options: Any) -> typer.Typer:
    """A group of commands whose help and usage errors are click's plain text. Typer's rich
    panels would import rich, markdown-it and pygments first: half the time of `automator
    --help`, which a user reads in a terminal as well without them."""
    return kind(help=help, rich_markup_mode=None, **options)


def say(line: str, err: bool = False) -> None:
    """Print one line whose text comes (in part) from the store or a file: a control
    character in it is shown as its escape, so that it cannot act on the terminal."""
    typer.echo(printable(line), err=err)


def say_columns(*values: object) -> None:
    """Print values separated by tabs, each escaped as `say` does (tabs in them too)."""
    typer.echo("\t".join(printable(str(value)) for value in values))


def reports_errors(command: F) -> F:
    """Turn an AutomatorError into one readable line and exit code 1 (no traceback). So is
    a SQLite database that another process kept locked past the busy timeout: a condition
    that passes, not a bug; its transaction was rolled back."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AutomatorError as exc:
            _report(exc)
        except Exception as exc:
            said = locked(exc)
            if said is None:
                raise
            _report(said)

    return wrapper  # type: ignore[return-value]


def _report(exc: AutomatorError) -> NoReturn:
    typer.secho(f"error: {printable(str(exc))}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1) from None


NO_RECORDS = 2  # exit code: the file held no record (1: some record was rejected)


def print_import(report: ImportReport, noun: str) -> None:
    """An import's rejected records and warnings that it kept, one per line on stderr, then
    its counts; exit code 1 when a record was rejected, NO_RECORDS when the file held none
    (an export that came out empty is what a cron job wants to hear of)."""
    for error in report.errors:
        say(f"rejected {error}", err=True)
    for warning in report.warnings:
        say(f"warning {warning}", err=True)
    if report.empty is not None:
        say(f"error: {report.empty}", err=True)
    extra = f", {report.duplicates} already known" if report.duplicates else ""
    if report.merged:
        extra += f" ({report.merged} merged into an earlier record for the same address)"
    warned = f", {report.warned} warning{'s' if report.warned != 1 else ''}" if report.warned else ""
    typer.echo(f"imported {report.imported} {noun}{extra}, rejected {report.rejected}{warned}")
    if report.rejected:
        raise typer.Exit(1)
    if report.empty is not None:
        raise typer.Exit(NO_RECORDS)
