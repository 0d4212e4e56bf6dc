"""Test doubles for automator's ports: a transport that records, and one that fails on cue."""

from __future__ import annotations

from email.message import EmailMessage

from automator.emails import OutgoingEmail
from automator.errors import PermanentDeliveryError, TemporaryDeliveryError
from automator.transports.base import Transport


class RecordingTransport(Transport):
    """Keeps every email it is given; `fail_with` makes the next sends raise instead, and
    `refuse` does so for the addresses it names."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.fail_with: TemporaryDeliveryError | PermanentDeliveryError | None = None
        self.refuse: dict[str, TemporaryDeliveryError | PermanentDeliveryError] = {}

    async def send(self, email: OutgoingEmail) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        for recipient in email.recipients:
            if recipient in self.refuse:
                raise self.refuse[recipient]
        self.sent.append(email.parsed())

    async def close(self) -> None:
        return None

    def to(self, address: str) -> list[EmailMessage]:
        return [email for email in self.sent if address in str(email["To"])]
