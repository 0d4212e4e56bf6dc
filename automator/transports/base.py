"""The port every transport implements."""

from __future__ import annotations

from typing import Protocol

from automator.emails import OutgoingEmail


class Transport(Protocol):
    """Delivers one email.

    Raises `TemporaryDeliveryError` when a later retry may succeed and
    `PermanentDeliveryError` when it will not. Returning normally means delivered.
    """

    async def send(self, email: OutgoingEmail) -> None: ...

    async def close(self) -> None: ...
