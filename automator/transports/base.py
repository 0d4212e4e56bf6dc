"""The port every transport implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from automator.emails import OutgoingEmail


class Transport(Protocol):
    """Delivers emails.

    `send` raises `TemporaryDeliveryError` when a later retry may succeed and
    `PermanentDeliveryError` when it will not. Returning normally means delivered.
    """

    async def send(self, email: OutgoingEmail) -> None: ...

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[BaseException | None]:
        """Sends a batch; per email, in order, None when delivered or the error `send` raised.

        This default sends one email after the other; a transport that can do better (the
        SMTP transport's pooled connections) overrides it.
        """
        outcomes: list[BaseException | None] = []
        for email in emails:
            try:
                await self.send(email)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    async def close(self) -> None: ...
