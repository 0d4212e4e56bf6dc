"""The embedded default transport: one RFC 5322 `.eml` file per message in an outbox folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from automator.emails import OutgoingEmail
from automator.errors import TemporaryDeliveryError
from automator.transports.base import Transport


class FileTransport(Transport):
    """Writes each email atomically (temp file + rename) so a crash never leaves half a file."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    async def send(self, email: OutgoingEmail) -> None:
        message_id = email.message_id or "message"
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", message_id.strip("<>")) + ".eml"
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            tmp = self.outbox / f".{name}.tmp"
            tmp.write_bytes(email.data)
            os.replace(tmp, self.outbox / name)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to outbox {self.outbox}: {exc}") from exc

    async def close(self) -> None:
        return None
