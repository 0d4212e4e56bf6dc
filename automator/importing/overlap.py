"""An import's batches stored on a thread of their own while the next one is read.

Reading and validating a batch is the importer's work, storing it the database server's:
done one after the other, each waits for the other. Stored on a thread of its own (which
waits on the server with the GIL released), batch N is written while batch N+1 is read.
The batches are still stored one at a time and in the file's order, so that an import does
what it did in one thread: the first line of an event key wins, a later contact line wins,
journey moves follow the events' order. At most one batch waits while one is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
    """Whether to store an import's batches on a thread of their own: on PostgreSQL, whose
    server does the storing. SQLite writes in this process, much of it holding the GIL, and
    a load into an empty store keeps one connection throughout (`bulk.loading`)."""
    return store.engine.dialect.name == "postgresql"
