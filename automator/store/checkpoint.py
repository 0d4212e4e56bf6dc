"""The `Checkpointer`: copies SQLite's write-ahead log into the database file from a thread
of its own, so that a commit never waits for the disk. Left to SQLite, the commit that fills
the log does the copy and its fsync while its caller waits."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger("automator.store")

CHECKPOINT_PAUSE = 0.5  # seconds


class Checkpointer:
    """A SQLite file's checkpoint thread, started by the first commit that wakes it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self, _connection: Any = None) -> None:
        """Ask for a checkpoint soon (called on every commit; it never blocks)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._stop = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run, args=(self._stop,), name="automator-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wanted.set()

    def stop(self) -> None:
        """Stop the thread; the next commit starts a new one."""
        with self._lock:
            if self._thread is not None:
                self._stop.set()
                self._wanted.set()
                self._thread.join(timeout=30)
                self._thread = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wanted.wait()
            self._wanted.clear()
            if stop.is_set():
                return
            try:
                with self._engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the next commit asks again; SQLite's own checkpoint is the backstop
                log.warning("WAL checkpoint failed", exc_info=True)
            stop.wait(CHECKPOINT_PAUSE)  # at most one checkpoint per pause, however many commits
