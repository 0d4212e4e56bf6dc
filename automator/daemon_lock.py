"""The single-daemon lock: one `automator run` per SQLite database."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from automator.errors import AutomatorError
from automator.store import sqlite


class SingleDaemonLock:
    """An exclusive lock on a SQLite database: one daemon per SQLite file, whatever path
    (a symlink, a hard link) names it.

    Two flocks: one on a lock file beside the file's real path, which names its holder for
    the next daemon's error; and one on the database file itself, which every name of the
    file shares (a hard link has a real path of its own). The OS releases both when the
    process dies, even by SIGKILL, so a crash never leaves a stale lock behind.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        database = make_url(database_url).database or ""
        self.in_memory = database in ("", ":memory:")  # no file: no other process can open it
        self.database = Path(os.path.realpath(database))
        # Beside the file itself: a second path to it (a symlink) must find the same lock.
        self.path = Path(f"{self.database}.daemon.lock")
        self.handle: IO[str] | None = None
        self.file: tuple[int, int] | None = None  # the database file's (device, inode), when locked

    def acquire(self) -> None:
        """Take the lock, or raise AutomatorError: another daemon holds it, or the database's
        folder does not exist (it is not made here: a typo must not become a new database)."""
        sqlite.require_folder(self.database_url)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown pid"
            handle.close()
            raise _another_daemon(holder) from None
        try:
            self.file = None if self.in_memory else _lock_database_file(self.database)
        except BlockingIOError:
            handle.close()
            raise _another_daemon(_flock_holder(self.database) or "unknown pid") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(_DATABASE_FILES[self.file], fcntl.LOCK_UN)
            _LOCKED_FILES.discard(self.file)
            self.file = None
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def is_held(self) -> bool:
        """Whether some process holds the lock now (through this path or another)."""
        if not self.in_memory and _flock_holder(self.database) is not None:
            return True
        if not self.path.exists():
            return False
        with self.path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False


# A descriptor of each database file this process has locked, by (device, inode), kept open
# for the process's life and reused: closing any descriptor of a file drops every POSIX lock
# the process holds on it, and SQLite's connections hold theirs (a flock is a lock apart).
_DATABASE_FILES: dict[tuple[int, int], int] = {}
_LOCKED_FILES: set[tuple[int, int]] = set()  # those this process's SingleDaemonLocks hold


def _lock_database_file(database: Path) -> tuple[int, int]:
    """Flock the database file, made empty if it does not exist yet (SQLite takes an empty
    file for a new database); its (device, inode). BlockingIOError if another holds it."""
    key = _identity(database)
    if key is None or key not in _DATABASE_FILES:
        handle = os.open(database, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        found = os.fstat(handle)
        key = (found.st_dev, found.st_ino)
        _DATABASE_FILES[key] = handle
    if key in _LOCKED_FILES:  # a flock is the descriptor's: this process's would not conflict
        raise BlockingIOError
    fcntl.flock(_DATABASE_FILES[key], fcntl.LOCK_EX | fcntl.LOCK_NB)
    _LOCKED_FILES.add(key)
    return key


def _identity(database: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(database)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _flock_holder(database: Path) -> str | None:
    """The process that holds a flock on the database file, as the kernel lists it in
    /proc/locks (Linux), without opening the file; None if none does or none can tell."""
    try:
        found = os.stat(database)
        listed = Path("/proc/locks").read_text(encoding="ascii")
    except OSError:
        return None
    device = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    for line in listed.splitlines():
        fields = line.split()  # 1: FLOCK  ADVISORY  WRITE 4242 fe:00:3731779 0 EOF
        if fields[1:2] == ["FLOCK"] and len(fields) > 5 and fields[5] == device:
            return f"pid {fields[4]} on {socket.gethostname()}"
    return None


def _another_daemon(holder: str) -> AutomatorError:
    return AutomatorError(
        f"another automator daemon ({holder}) is already running on this SQLite database; "
        "stop it first (several daemons need PostgreSQL)"
    )
