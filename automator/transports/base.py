"""The port every transport implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from automator.emails import OutgoingEmail

# Told each email's outcome as soon as it is known: its index in the batch, and None or the
# error. It may return an awaitable that is done once the caller has recorded the outcome.
OnResult = Callable[[int, BaseException | None], Awaitable[None] | None]


class Transport(Protocol):
    """Delivers emails.

    `send` raises `TemporaryDeliveryError` when a later retry may succeed and
    `PermanentDeliveryError` when it will not. Returning normally means delivered.
    """

    async def send(self, email: OutgoingEmail) -> None: ...

    async def send_many(
        self, emails: Sequence[OutgoingEmail], on_result: OnResult | None = None
    ) -> list[BaseException | None]:
        """Sends a batch; per email, in order, None when delivered or the error `send` raised.
        `on_result` hears each outcome the moment it is known (the batch's caller records them
        while the rest is still going out).

        What `on_result` returns, when it returns an awaitable, is done once that outcome is
        recorded. A transport waits for it before starting the email after next on the same
        connection, so each connection has at most two emails whose outcome a crash would
        lose: the one on the wire, and the one before it while its record commits.

        This default sends one email after the other; a transport that can do better (the
        SMTP transport's pooled connections) overrides it.
        """
        outcomes: list[BaseException | None] = []
        recorded: Awaitable[None] | None = None
        for index, email in enumerate(emails):
            outcome: BaseException | None = None
            try:
                await self.send(email)
            except Exception as exc:
                outcome = exc
            outcomes.append(outcome)
            before, recorded = recorded, on_result(index, outcome) if on_result is not None else None
            if before is not None:
                await before
        return outcomes

    async def close(self) -> None: ...
