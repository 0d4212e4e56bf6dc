"""Test doubles for automator's ports: a transport that records, and one that fails on cue."""

from __future__ import annotations

from email.message import EmailMessage

from automator.emails import OutgoingEmail
from automator.errors import PermanentDeliveryError, TemporaryDeliveryError


class RecordingTransport:
    """Keeps every email it is given; `fail_with` makes the next sends raise instead."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.fail_with: TemporaryDeliveryError | PermanentDeliveryError | None = None

    async def send(self, email: OutgoingEmail) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(email.parsed())

    async def close(self) -> None:
        return None

    def to(self, address: str) -> list[EmailMessage]:
        return [email for email in self.sent if address in str(email["To"])]
