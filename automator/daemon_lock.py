"""The single-daemon lock: one `automator run` per SQLite database."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from automator.errors import AutomatorError


class SingleDaemonLock:
    """An exclusive lock file beside a SQLite database: one daemon per SQLite file.

    The OS releases it when the process dies, even by SIGKILL, so a crash never leaves a
    stale lock behind.
    """

    def __init__(self, database_url: str) -> None:
        database = make_url(database_url).database or ""
        # Beside the file itself: a second path to it (a symlink) must find the same lock.
        self.path = Path(f"{os.path.realpath(database)}.daemon.lock")
        self.handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown pid"
            handle.close()
            raise AutomatorError(
                f"another automator daemon ({holder}) is already running on this SQLite database; "
                "stop it first (several daemons need PostgreSQL)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def is_held(self) -> bool:
        """Whether some process holds the lock now."""
        if not self.path.exists():
            return False
        with self.path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
