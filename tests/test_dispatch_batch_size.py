"""`--dispatch-batch N` bounds what one dispatcher holds: the next batch is claimed while
one goes out, but the two together never hold more than N claims, so that several daemons
share a burst in batches of N, as the option says.

The messages are due now on the real clock (carts two hours old); the server takes a while
over each email, so that the sending and the claims overlap."""

# The daemon tests' fixtures are imported by name; pytest passes them to the tests as arguments.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from automator.engine import Engine, TickReport
from automator.testing import RecordingTransport
from automator.transports.base import OutgoingEmail
from tests.conftest import statuses
from tests.test_daemon import carts_due, project_dir  # noqa: F401  (fixtures)

DUE = 60
BATCH = 10
SERVER_SECONDS = 0.01  # per email: a batch of BATCH takes longer to go out than a claim


class SlowServer(RecordingTransport):
    async def send(self, email: OutgoingEmail) -> None:
        await asyncio.sleep(SERVER_SECONDS)
        await super().send(email)


def test_a_dispatcher_never_holds_more_claims_than_its_batch_size(project, store, carts_due) -> None:
    carts_due(DUE)
    engine = Engine(project, store, SlowServer())
    now = datetime.now(UTC)
    engine.evaluate(now, TickReport(now))
    dispatcher = engine.dispatcher("daemon")
    take = dispatcher.claims.take
    claims: list[tuple[int, int]] = []  # per claim: how many it took, how many were held after it

    def counted(*args: Any) -> Any:
        taken = take(*args)
        claims.append((len(taken.messages), statuses(store).get("sending", 0)))
        return taken

    dispatcher.claims.take = counted  # type: ignore[method-assign]
    try:
        sent = asyncio.run(dispatcher.run(now, TickReport(now), batch_size=BATCH))
    finally:
        engine.close()

    assert sent == DUE and statuses(store) == {"sent": DUE}
    assert max(held for _, held in claims) <= BATCH
    assert any(held > took for took, held in claims)  # a claim went beside a batch going out
