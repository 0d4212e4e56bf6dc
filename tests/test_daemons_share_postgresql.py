"""Several `automator run` daemons on one PostgreSQL share the queue: killed mid-batch, one
of them loses nothing, and only what it had open in its transport can arrive twice, with
its original Message-ID. The others put its claims back once its advisory lock is free (it
went with its connection, see `store.claims.owning`) and the claims have gone `SILENCE`
without a renewal, rather than wait for their five-minute leases.

Like tests/test_daemon.py, real subprocesses on the real clock, a real SMTP server on
127.0.0.1; every wait polls with a deadline.
"""

# The daemon tests' fixtures are imported by name; pytest passes them to the tests as arguments.
# ruff: noqa: F811

from __future__ import annotations

import signal
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from automator.daemon import HEARTBEAT_SECONDS
from automator.dispatch.claims import ORPHANED, SILENCE
from automator.reports import TickReport
from automator.store import Store, heartbeats, messages
from tests.conftest import statuses
from tests.test_daemon import (  # noqa: F401  (fixtures)
    DELIVERY,
    STARTUP,
    DaemonProcess,
    all_messages,
    carts_due,
    daemon_env,
    message_ids_received,
    open_in_transport,
    project_dir,
    start_daemon,
)

DAEMONS = 3
DUE = 400
BATCH = "50"  # claimed at a time: the three daemons share the queue


def claims_of(store: Store) -> Counter[int]:
    """How many messages each daemon process (by pid) holds in `sending`."""
    return Counter(
        int(m.claimed_by.split(":")[2])
        for m in all_messages(store)
        if m.status == "sending" and m.claimed_by and m.claimed_by.startswith("daemon:")
    )


def senders(store: Store) -> Counter[int]:
    """How many messages each daemon process (by pid) recorded sent (its claim stays on them)."""
    return Counter(
        int(m.claimed_by.split(":")[2]) for m in all_messages(store) if m.status == "sent" and m.claimed_by
    )


def orphaned(store: Store) -> set[int]:
    """The messages put back in the queue because the dispatcher sending them was gone."""
    with store.session() as session:
        return {
            m.id
            for m in all_messages(store)
            if m.id is not None and any(line.reason == ORPHANED for line in messages.history(session, m.id))
        }


def test_three_daemons_on_one_postgresql_lose_nothing_when_one_is_killed_mid_batch(
    start_daemon, carts_due, smtp_server, store, database_url, daemon_env, capsys, record_property
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several daemons need PostgreSQL (one daemon per SQLite file)")
    addresses = carts_due(DUE)
    smtp_server.hold_seconds = 0.02  # slow enough to catch the daemons mid-batch
    daemons: dict[int, DaemonProcess] = {}
    for _ in range(DAEMONS):
        daemon = start_daemon("--dispatch-batch", BATCH)
        daemons[daemon.process.pid] = daemon
    first = next(iter(daemons.values()))

    def busy() -> bool:
        holding = claims_of(store)
        return len(smtp_server.messages) >= DUE // 4 and len(holding) >= 2 and max(holding.values()) >= 10

    first.wait_until(busy, STARTUP + DELIVERY, "a quarter at the server, two daemons with claims")
    victim = claims_of(store).most_common(1)[0][0]

    daemons[victim].stop(signal.SIGKILL, timeout=10)

    arrived_before = len(smtp_server.messages)
    survivor = next(d for pid, d in daemons.items() if pid != victim)
    survivor.wait_until(
        lambda: statuses(store).get("sent") == DUE, STARTUP + DELIVERY, f"all {DUE} messages sent"
    )
    codes = [daemon.stop()[0] for pid, daemon in daemons.items() if pid != victim]

    received = message_ids_received(smtp_server)
    by_address = {m.email: m for m in all_messages(store)}
    put_back = orphaned(store)
    duplicates = len(smtp_server.messages) - DUE
    open_at_kill = open_in_transport(daemon_env)
    sent_by = senders(store)
    record_property("duplicates", duplicates)
    with capsys.disabled():
        print(
            f"\n{DAEMONS} daemons, {DUE} messages, SIGKILL of one mid-batch: {arrived_before} delivered "
            f"before the kill, {len(put_back)} of its claims put back by the others, at most "
            f"{open_at_kill} open in its transport, {duplicates} duplicate(s), each with its original "
            f"Message-ID; sent per daemon: {sorted(sent_by.values(), reverse=True)}"
        )
    assert codes == [0] * (DAEMONS - 1)
    assert statuses(store) == {"sent": DUE}  # none lost, none stuck
    assert sorted(received) == sorted(addresses)  # every message arrived
    assert put_back  # the killed daemon had claims, and the others took them over
    for address, ids in received.items():
        assert set(ids) == {by_address[address].message_id}  # a copy is never a new message
        if len(ids) > 1:
            assert by_address[address].id in put_back  # only the killed daemon's claims go twice
    assert 0 <= duplicates <= open_at_kill
    assert len([pid for pid in sent_by if pid != victim]) == DAEMONS - 1  # both survivors sent
    assert any(
        d.logged("re-queued messages a stopped dispatcher left in flight")
        for pid, d in daemons.items()
        if pid != victim
    )


def test_a_live_dispatcher_whose_lock_connection_was_closed_keeps_its_claims(
    engine, store, carts_due, database_url
) -> None:
    """A dispatcher's lock also goes free when the server closes the connection holding it
    (pg_terminate_backend, idle_session_timeout, a firewall) while the dispatcher lives on and
    sends: the others leave its claims alone while it renews them, and put them back only
    once they have gone SILENCE without a renewal, as a dead dispatcher's do."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the dispatchers' locks are PostgreSQL's")
    carts_due(6)
    now = datetime.now(UTC)
    engine.evaluate(now, TickReport(now))
    assert statuses(store) == {"queued": 6}
    clock = [now]
    sender, other = (
        engine.dispatcher("daemon", lambda: clock[0]),
        engine.dispatcher("daemon", lambda: clock[0]),
    )
    with sender.claims.alive():
        taken = sender.claims.take(now, 100).messages
        with store.engine.connect() as admin:  # the server drops the sender's idle lock connection
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            )
        assert len(taken) == 6 and statuses(store) == {"sending": 6}

        clock[0] = now + SILENCE - timedelta(seconds=1)  # the sender renewed them just before
        assert other.claims.recover_abandoned() == 0
        clock[0] = now + SILENCE
        sender.claims.renew()
        clock[0] = now + 2 * SILENCE - timedelta(seconds=1)
        assert other.claims.recover_abandoned() == 0
        assert statuses(store) == {"sending": 6}

        clock[0] = now + 2 * SILENCE + timedelta(seconds=1)  # no renewal since: as if it had died
        assert other.claims.recover_abandoned() == 6
    assert statuses(store) == {"queued": 6}


def test_status_sees_again_a_daemon_whose_lock_connection_the_server_closed(
    start_daemon, cli, store, database_url
) -> None:
    """The server closes a live daemon's lock connection (pg_terminate_backend,
    idle_session_timeout): the lock goes with it, and `status` would call the daemon dead.
    At its next heartbeat the daemon takes its lock again, and `status` sees it running."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the daemons' locks are PostgreSQL's (SQLite's is a file lock)")
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("tick"), STARTUP, "the first tick")
    name = f"{socket.gethostname()}:{daemon.process.pid}"
    running = f"daemon: running ({name})\n"
    assert cli("status").output.startswith(running)

    assert close_lock_connection(store, heartbeats.key(name)) == 1

    daemon.wait_until(
        lambda: cli("status").output.startswith(running),
        HEARTBEAT_SECONDS + STARTUP,
        "status seeing it again",
    )
    assert daemon.logged("took the daemon's lock again: the database had closed its connection")
    assert daemon.stop()[0] == 0


def close_lock_connection(store: Store, key: int) -> int:
    """Have the server close the connection that holds the advisory lock `key`, as a DBA's
    pg_terminate_backend does; how many it closed. (pg_locks shows a 64-bit key's high and
    low halves as classid and objid.)"""
    unsigned = key % 2**64
    with store.engine.connect() as admin:
        closed = admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND objsubid = 1 AND classid::bigint = :high AND objid::bigint = :low"
            ),
            {"high": unsigned >> 32, "low": unsigned % 2**32},
        ).all()
    return len(closed)
