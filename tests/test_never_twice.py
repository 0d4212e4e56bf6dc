"""Never twice: overlapping `automator tick` processes, and ticks beside a running daemon,
deliver every due message exactly once to a real SMTP server; a person's action racing a
dispatcher's claim can neither resend nor lose a message.

The processes run on the real clock, so messages are made due by carts two hours old.
"""

# The daemon tests' fixtures are imported by name; pytest passes them to the tests as arguments.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from automator import support
from automator.dispatch import LEASE
from automator.engine import Engine, TickReport
from automator.errors import StateError
from automator.project import Project
from automator.store import Store, claims, messages
from automator.testing import RecordingTransport
from tests.conftest import cart, statuses
from tests.smtp_server import LoopbackSmtpServer
from tests.test_daemon import (  # noqa: F401  (fixtures)
    AUTOMATOR,
    DELIVERY,
    STARTUP,
    all_messages,
    carts_due,
    project_dir,
    start_daemon,
)

DUE = 300


@pytest.fixture
def daemon_env(process_env: dict[str, str], smtp_server: LoopbackSmtpServer) -> dict[str, str]:
    """The daemons' environment with the transport's default patience: these tests count
    copies, and a session that a loaded machine slows past a short timeout would be retried
    after the processes under test have ended."""
    return {**process_env, "AUTOMATOR_SMTP_URL": smtp_server.url()}


def start_ticks(
    count: int, project_dir: Path, env: dict[str, str], logs: Path
) -> list[subprocess.Popen[bytes]]:
    """`count` `automator tick` processes started one right after the other (overlapping cron
    runs); each writes its output to a file of its own."""
    processes = []
    for number in range(count):
        with (logs / f"tick-{number}.log").open("wb") as log:
            args = [*AUTOMATOR, "--project", str(project_dir), "tick"]
            processes.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes


def wait_all(processes: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + STARTUP + DELIVERY
    for number, process in enumerate(processes):
        code = process.wait(max(1.0, deadline - time.monotonic()))
        output = (logs / f"tick-{number}.log").read_text(encoding="utf-8")
        assert code == 0, f"tick {number} exited {code}:\n{output}"


def copies_received(server: LoopbackSmtpServer) -> Counter[str]:
    return Counter(recipient for received in list(server.messages) for recipient in received.rcpt_tos)


def assert_each_arrived_once(server: LoopbackSmtpServer, addresses: list[str], store: Store) -> None:
    received = copies_received(server)
    twice = {address: count for address, count in received.items() if count > 1}
    assert not twice, f"{len(twice)} addresses got more than one copy, e.g. {list(twice.items())[:3]}"
    assert sorted(received) == sorted(addresses), undelivered(store, set(addresses) - set(received))
    assert statuses(store) == {"sent": len(addresses)}


def undelivered(store: Store, missing: set[str]) -> str:
    """What became of the messages to `missing` addresses: a failure should say whether one
    was lost or is waiting for a retry, and why."""
    found = [message for message in all_messages(store) if message.email in missing]
    return f"{len(missing)} never arrived: " + "; ".join(
        f"{m.email} {m.status} attempts={m.attempts} send_at={m.send_at} error={m.last_error!r}"
        for m in found
    )


@pytest.mark.parametrize("ticks", [3, 8])
def test_overlapping_ticks_deliver_every_message_exactly_once(
    ticks, carts_due, smtp_server, store, project_dir, daemon_env, tmp_path
) -> None:
    addresses = carts_due(DUE)
    smtp_server.hold_seconds = 0.005  # each send takes a moment: the ticks' batches overlap

    wait_all(start_ticks(ticks, project_dir, daemon_env, tmp_path), tmp_path)

    assert_each_arrived_once(smtp_server, addresses, store)


def test_ticks_beside_a_running_daemon_deliver_every_message_exactly_once(
    start_daemon, carts_due, smtp_server, store, project_dir, daemon_env, tmp_path
) -> None:
    addresses = carts_due(DUE)
    smtp_server.hold_seconds = 0.005
    daemon = start_daemon()
    ticks = start_ticks(3, project_dir, daemon_env, tmp_path)

    wait_all(ticks, tmp_path)
    daemon.wait_until(lambda: statuses(store).get("sent") == DUE, STARTUP + DELIVERY, f"all {DUE} sent")
    code, _ = daemon.stop()

    assert code == 0
    assert_each_arrived_once(smtp_server, addresses, store)


def test_a_daemon_starting_leaves_a_running_ticks_claims_alone(
    start_daemon, carts_due, smtp_server, store, project_dir, daemon_env, tmp_path
) -> None:
    """A daemon puts back at start-up what a dead daemon left in `sending`, never what a tick
    beside it is sending right now (that waits for its lease)."""
    addresses = carts_due(DUE)
    smtp_server.hold_seconds = 0.02
    [tick] = start_ticks(1, project_dir, daemon_env, tmp_path)
    deadline = time.monotonic() + STARTUP
    while statuses(store).get("sending", 0) == 0 and tick.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon = start_daemon()

    wait_all([tick], tmp_path)
    daemon.wait_until(lambda: statuses(store).get("sent") == DUE, STARTUP + DELIVERY, f"all {DUE} sent")
    daemon.stop()

    assert_each_arrived_once(smtp_server, addresses, store)
    assert not daemon.logged("re-queued messages a stopped daemon left in flight")


# A person racing a dispatcher, in process: the dispatcher's read of the due messages is
# made stale on purpose (read before the person's action commits), as a second process's
# read would be.

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
def queued_pair(
    make_contact: Callable[..., int], make_event: Callable[..., str], project: Project, store: Store
) -> tuple[Engine, RecordingTransport, list[int]]:
    transport = RecordingTransport()
    engine = Engine(project, store, transport)
    for number in range(2):
        email = f"shopper{number}@example.com"
        make_contact(email)
        make_event(
            "cart_updated", NOW - timedelta(hours=2), email=email, id=f"cart-{number}", **cart(f"c{number}")
        )
    engine.evaluate(NOW, TickReport(NOW))
    ids = sorted(message.id for message in all_messages(store) if message.id is not None)
    assert len(ids) == 2 and statuses(store) == {"queued": 2}
    return engine, transport, ids


def dispatch_with_a_stale_read(engine: Engine, store: Store, act: Callable[[], object]) -> None:
    """Read the due messages, let `act` change some of them, then dispatch what was read."""
    with store.session() as session:
        stale = claims.due(session, NOW, 500)

    act()

    def read_before(*_args: object, **_kwargs: object) -> list[claims.Due]:
        return stale

    original = claims.due
    claims.due = read_before  # type: ignore[assignment]
    try:
        asyncio.run(engine.dispatcher().run(NOW, TickReport(NOW)))
    finally:
        claims.due = original


def test_a_message_cancelled_after_a_dispatcher_read_it_is_not_sent(queued_pair, store) -> None:
    engine, transport, (cancelled, other) = queued_pair

    dispatch_with_a_stale_read(
        engine, store, lambda: support.cancel(engine, cancelled, "customer asked", "mai", NOW)
    )

    assert [str(email["To"]) for email in transport.sent] == ["shopper1@example.com"]
    by_id = {message.id: message.status for message in all_messages(store)}
    assert by_id == {cancelled: "cancelled", other: "sent"}


def test_a_message_sent_by_another_dispatcher_is_not_sent_again(queued_pair, store) -> None:
    engine, transport, ids = queued_pair

    dispatch_with_a_stale_read(
        engine, store, lambda: asyncio.run(engine.dispatcher().run(NOW, TickReport(NOW)))
    )

    assert sorted(str(email["To"]) for email in transport.sent) == [
        "shopper0@example.com",
        "shopper1@example.com",
    ]
    assert statuses(store) == {"sent": 2}


def test_a_cancel_that_comes_after_the_send_says_when_it_was_sent(queued_pair, store) -> None:
    engine, _, (first, _) = queued_pair
    asyncio.run(engine.dispatcher().run(NOW, TickReport(NOW)))

    with pytest.raises(StateError) as refused:
        support.cancel(engine, first, "customer asked", "mai", NOW + timedelta(minutes=2))

    assert str(refused.value) == (
        f"message {first} was sent at 2026-11-20 04:00 UTC, before your cancel; "
        "only a queued or held message can be cancelled"
    )


def test_send_now_on_a_message_being_sent_is_refused_and_changes_nothing(queued_pair, store) -> None:
    engine, _, (first, _) = queued_pair
    with store.transaction() as session:
        [due, _] = claims.due(session, NOW, 500)
        claims.claim(session, [due], NOW, "tick:elsewhere", NOW + LEASE)

    with pytest.raises(StateError) as refused:
        support.send_now(engine, first, "customer asked", "mai", NOW)

    assert "started sending at 2026-11-20 04:00 UTC, before your send now" in str(refused.value)
    with store.session() as session:
        assert messages.get(session, first).status == "sending"  # type: ignore[union-attr]


def test_a_claim_takes_only_what_is_still_queued(queued_pair, store) -> None:
    engine, _, (first, second) = queued_pair
    with store.session() as session:
        stale = claims.due(session, NOW, 500)
    support.hold(engine, first, "checking", "mai", NOW)

    with store.transaction() as session:
        taken = claims.claim(session, stale, NOW, "tick:here", NOW + LEASE)

    assert [message.id for message in taken] == [second]
    by_id = {message.id: message.status for message in all_messages(store)}
    assert by_id == {first: "held", second: "sending"}
