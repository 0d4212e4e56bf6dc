"""The port every transport implements."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol


class Transport(Protocol):
    """Delivers one email.

    Raises `TemporaryDeliveryError` when a later retry may succeed and
    `PermanentDeliveryError` when it will not. Returning normally means delivered.
    """

    async def send(self, email: EmailMessage) -> None: ...

    async def close(self) -> None: ...
