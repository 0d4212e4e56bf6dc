"""The embedded default transport: one RFC 5322 `.eml` file per message in an outbox folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from automator.emails import OutgoingEmail
from automator.errors import TemporaryDeliveryError
from automator.transports.base import OnResult, Transport

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# A batch gives the event loop a turn after this many files: the dispatcher records what
# went out while the next group is written.
YIELD_EVERY = 50


class FileTransport(Transport):
    """Writes each email as `<its Message-ID>.eml` in the outbox, atomically (a temporary
    file renamed into place): a reader of the outbox never sees half an email, and a resend
    (the same Message-ID) replaces the file instead of adding a second one.

    There is no fsync. An email counts as delivered once its file is written: a crash of
    automator loses nothing (the kernel holds what was written and puts it on disk), and
    only a crash of the machine itself (a power cut, a kernel panic) can lose the files of
    its last few seconds, which SQLite (WAL, synchronous=NORMAL) may lose its last commits
    in too. A flush per file would wait for the disk once per email, which on most disks
    takes longer than everything else automator does for it, for a folder that is a local
    hand-off, not a mail queue. Mail that must survive a power cut goes through SMTP, whose
    server acknowledges only what it has stored.
    """

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    async def send(self, email: OutgoingEmail) -> None:
        self._write(email)

    async def send_many(
        self, emails: Sequence[OutgoingEmail], on_result: OnResult | None = None
    ) -> list[BaseException | None]:
        """Writes a batch, file after file, with nothing per email but the write and its
        rename (the folder is made once, when a write finds it missing).

        It does not wait for the outcomes to be recorded (see `Transport.send_many`): a file
        written again after a crash replaces the first one, so there is no copy to limit,
        and the writing goes on while the database is busy with the next claim."""
        outcomes: list[BaseException | None] = []
        for index, email in enumerate(emails):
            outcome: BaseException | None = None
            try:
                self._write(email)
            except Exception as exc:  # as Transport.send_many: each email's error is its own
                outcome = exc
            outcomes.append(outcome)
            if on_result is not None:
                on_result(index, outcome)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # the caller's turn to record what went out
        return outcomes

    async def close(self) -> None:
        return None

    def _write(self, email: OutgoingEmail) -> None:
        name = _UNSAFE_IN_NAME.sub("_", (email.message_id or "message").strip("<>")) + ".eml"
        folder = os.fspath(self.outbox)
        try:
            try:
                _write_file(folder, name, email.data)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                _write_file(folder, name, email.data)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to outbox {self.outbox}: {exc}") from exc


def _write_file(folder: str, name: str, data: bytes) -> None:
    """`data` as `folder/name`, through a temporary file beside it and a rename; a write that
    fails (a full disk) takes its temporary file away with it."""
    temporary = f"{folder}/.{name}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        os.replace(temporary, f"{folder}/{name}")
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
