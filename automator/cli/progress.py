"""How an import shows itself as it runs: each rejected record and warning printed as it is
found (on stderr), and on a terminal a progress bar over the file's bytes; elsewhere (CI, a
pipe, the tests) nothing more than those lines and the summary `print_import` writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automator.cli.output import say
from automator.display import printable

if TYPE_CHECKING:
    from automator.errors import ImportRecordError
    from automator.importing import RecordWarning


class ImportLines:
    """Prints an import's rejected records and warnings as they come."""

    def advanced(self, done: int, total: int) -> None:
        pass

    def rejected(self, error: ImportRecordError) -> None:
        self._print(f"rejected {error}")

    def warned(self, warning: RecordWarning) -> None:
        self._print(f"warning {warning}")

    def finishing(self, step: str) -> None:
        pass

    def _print(self, line: str) -> None:
        say(line, err=True)


class ImportBar(ImportLines):
    """ImportLines with a progress bar (rich) that the lines are printed above."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advanced(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=min(done, total), total=total)

    def finishing(self, step: str) -> None:
        """What the load does once its file is read, in place of the bar's name: at 100 %
        and still running, the bar would look stuck."""
        self._progress.update(self._task, description=step)
        self._progress.refresh()  # now: the step may take long, or be over before the next refresh

    def _print(self, line: str) -> None:
        self._progress.console.print(printable(line), markup=False, highlight=False, soft_wrap=True)


@contextmanager
def import_progress(path: Path, noun: str) -> Iterator[ImportLines]:
    """The watcher of an import of `path`: with a progress bar when stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield ImportLines()
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        name = f"importing {noun}"
        task = progress.add_task(name, total=path.stat().st_size)
        yield ImportBar(progress, task)
        progress.update(task, completed=path.stat().st_size, description=name)
