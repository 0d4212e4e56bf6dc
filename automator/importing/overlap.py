"""An import's reading and storing done at once: batch N is stored while batch N+1 is read.

Reading and validating a batch is the importer's work, storing it the database server's
(and, on SQLite, the importer's too): done one after the other, each waits for the other.

On PostgreSQL a big file is read in a process of its own (`reading`), which sends its
batches, already written as the rows of their COPY (`staged.EventCopy`, `staged.ContactCopy`),
with what it found wrong in them, to the importing process, which stores them. Reading in a
thread instead (`stored_in_order` with `background`: the store on a thread of its own,
waiting on the server with the GIL released) made the two take turns at the interpreter:
the store's thread, woken by the server's answer, waited for the reading thread to give up
the GIL before it could send the next statement, many times a batch, and the server sat
idle meanwhile. A small file is read in the importing process, the batch stored on a thread
of its own: starting another process costs more than it saves. A batch crosses as the bytes
of its COPY: sent as pickled objects, it cost the storing process as much to read back as
reading the file had. The reading process imports neither the store nor the database's
libraries (`staged` holds what it makes), which would double its memory.

Either way the batches are stored one at a time and in the file's order, so that an import
does what it did in one thread: the first line of an event key wins, a later contact line
wins, journey moves follow the events' order. At most a batch or two wait while one is stored.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from automator.errors import AutomatorError
from automator.importing.files import RecordFile
from automator.importing.report import ImportReport, Tally
from automator.memory import collecting_young_objects_only

if TYPE_CHECKING:
    from automator.store import Store

Batch = TypeVar("Batch")
Stored = TypeVar("Stored")


def stored_in_order(
    batches: Iterator[Batch], store: Callable[[Batch], Stored], background: bool
) -> Iterator[tuple[Batch, Stored]]:
    """Each batch with what `store` returned for it, in order: with `background`, `store`
    runs on a thread of its own, one batch behind the reading; without, in this thread."""
    if not background:
        for batch in batches:
            yield batch, store(batch)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-store") as storer:
        pending: tuple[Batch, Future[Stored]] | None = None
        for batch in batches:
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = batch, storer.submit(store, batch)
        if pending is not None:
            yield pending[0], pending[1].result()


def in_background(store: Store) -> bool:
    """Whether to read an import's big file in a process of its own (`reading`), and a small
    one's batches while the last is stored on a thread of its own: on PostgreSQL, whose
    server does the storing. SQLite writes in this process, much of it holding the GIL, and
    a load into an empty store keeps one connection throughout (`bulk.loading`): a big file
    read apart costs it more (the batches' pickling) than the overlap saves."""
    return store.engine.dialect.name == "postgresql"


# A file this big or bigger is read in a process of its own: about 30,000 events, past
# which that process's start (a second on a slow machine: it imports the importer's
# modules) pays for itself.
APART_FROM_BYTES = 8 * 1024 * 1024
AHEAD = 2  # batches the reading process may have sent that are not stored yet
WATCH_EVERY = 1.0  # seconds between two looks at whether the reading process still runs

ReadBatches = Callable[..., Iterator[Batch]]  # (records, path, tally, size, *more) → batches


class Reading(Generic[Batch]):
    """An import file's batches, read here or in a process of its own (`reading`); what the
    reading finds wrong is told to the import's tally as each batch comes."""

    def __init__(self, records: RecordFile, batches: Iterator[Batch], apart: bool) -> None:
        self._records = records
        self.batches = batches
        self.apart = apart  # read in a process of its own
        self.done = 0  # bytes of the file read, as far as the batches given so far go

    @property
    def path(self) -> Path:
        return self._records.path

    @property
    def size(self) -> int:
        return self._records.size

    def nothing(self) -> str:
        return self._records.nothing()


@contextmanager
def reading(
    read: ReadBatches[Batch],
    path: Path,
    fields: Collection[str],
    tally: Tally,
    size: int,
    *more: Any,
    apart: bool,
) -> Iterator[Reading[Batch]]:
    """The batches `read(records, path, tally, size, *more)` makes of the file, in order:
    read in this process, or, with `apart` and a big file, in a process of its own (`read`
    and `more` must then be picklable: a module's function, plain values). The file is
    opened here either way, so that one that cannot be read is refused at once."""
    with RecordFile(path, tally.warn, fields) as records:
        if not apart or records.size < APART_FROM_BYTES:
            here: Reading[Batch] = Reading(records, iter(()), apart=False)
            here.batches = _read_here(here, read(records, path, tally, size, *more), records)
            yield here
            return
        context = multiprocessing.get_context("spawn")  # as the render workers: no fork of threads
        sent: Any = context.Queue(maxsize=AHEAD)
        reader = context.Process(
            target=_read_apart,
            args=(read, path, tuple(fields), size, more, sent),
            name="automator-import-reader",
            daemon=True,
        )
        reader.start()
        there: Reading[Batch] = Reading(records, iter(()), apart=True)
        there.batches = _received(there, sent, reader, tally)
        try:
            yield there
        finally:
            if reader.is_alive():  # the import stopped before the file's end
                reader.terminate()
            reader.join()
            sent.close()
            sent.cancel_join_thread()


def _read_here(reading: Reading[Batch], batches: Iterator[Batch], records: RecordFile) -> Iterator[Batch]:
    for batch in batches:
        reading.done = records.done
        yield batch


@dataclass(frozen=True)
class _Read(Generic[Batch]):
    """What the reading process sends: a batch (None at the file's end), with the counts,
    rejected records and warnings of its lines, and how far into the file it has read."""

    batch: Batch | None
    found: ImportReport
    done: int


@dataclass(frozen=True)
class _Failed:
    """The reading process's error, sent in its place."""

    error: BaseException


def _read_apart(
    read: ReadBatches[Batch],
    path: Path,
    fields: tuple[str, ...],
    size: int,
    more: tuple[Any, ...],
    sent: Any,
) -> None:
    """The reading process: each batch sent as it is made, then the file's end, or the
    error that ended it (told by the importing process, not here as well). Ctrl-C on a
    terminal reaches the importing process, which ends this one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tally = Tally(None)  # keeps what it is told, for the importing process's tally

    def found() -> ImportReport:
        report, tally.report = tally.report, ImportReport()
        return report

    try:
        with RecordFile(path, tally.warn, fields) as records, collecting_young_objects_only():
            for batch in read(records, path, tally, size, *more):
                sent.put(_Read(batch, found(), records.done))
            sent.put(_Read(None, found(), records.done))
    except BaseException as exc:
        sent.put(_Failed(_picklable(exc)))
    finally:
        sent.close()
        sent.join_thread()  # the last batch out of this process before it ends


def _picklable(exc: BaseException) -> BaseException:
    """The error itself when it can be sent to the importing process, else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return AutomatorError(f"{type(exc).__name__}: {exc}")
    return exc


def _received(reading: Reading[Batch], sent: Any, reader: Any, tally: Tally) -> Iterator[Batch]:
    """The batches the reading process sends, in order, each problem it found told to
    `tally` before its batch is given; its error raised here."""
    while True:
        item = _next(sent, reader, reading.path)
        if isinstance(item, _Failed):
            raise item.error
        _tell(tally, item.found)
        reading.done = item.done
        if item.batch is None:
            return
        yield item.batch


def _next(sent: Any, reader: Any, path: Path) -> Any:
    """What the reading process sends next; an error if it ends without sending it."""
    while reader.is_alive():
        try:
            return sent.get(timeout=WATCH_EVERY)
        except queue.Empty:
            continue
    try:  # it may have sent its last before it ended
        return sent.get(timeout=WATCH_EVERY)
    except queue.Empty:
        raise AutomatorError(
            f"the process reading {path} ended (exit code {reader.exitcode}) before the file's "
            "end; nothing after the last batch stored was imported"
        ) from None


def _tell(tally: Tally, found: ImportReport) -> None:
    """Add what the reading process found in a batch's lines to the import's tally."""
    tally.report.read += found.read
    tally.report.merged += found.merged
    for error in found.errors:
        tally.reject(error)
    for warning in found.warnings:
        tally.warn(warning)
