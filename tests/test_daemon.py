"""`automator run` as an operator runs it: a real subprocess, a real SQLite file, a real SMTP
server on 127.0.0.1. Killed mid-batch it loses nothing and resends only with the same
Message-ID; SIGTERM stops it cleanly; a second daemon on the same file refuses to start.

The daemon runs on the real clock, so the messages are made due by events two hours old.
Every wait polls the database, the SMTP server or the log with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
from sqlalchemy import make_url

from automator.daemon import Daemon, DaemonOptions
from automator.daemon_lock import SingleDaemonLock
from automator.engine import Engine, TickReport
from automator.pipeline import Stopped
from automator.project import Project
from automator.store import Store, messages, suppressions
from automator.store.messages import QueueFilter
from automator.transports.smtp import SmtpTransport
from automator.transports.smtp_settings import SmtpSettings
from tests.conftest import cart, statuses
from tests.smtp_server import LoopbackSmtpServer, free_port

SCRIPT = Path(sys.executable).with_name("automator")
AUTOMATOR = (
    [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from automator.cli import app; app()"]
)

# Quiet hours and the frequency cap off, so that everything due goes out at once whatever
# the time of day the test runs.
SETTINGS = """\
[automator]
from = "Lotus Shop <hello@shop.example.com>"
base_url = "https://shop.example.com"
timezone = "Asia/Ho_Chi_Minh"
secret = "daemon-test-secret-0123456789abcdef0123456789"
quiet_hours = false
frequency_cap = false
"""

BATCH_OF = 300
STARTUP = 30.0  # seconds a daemon may take to start, evaluate and reach the SMTP server
DELIVERY = 60.0  # seconds to deliver a batch of a few hundred messages
STOP = 25.0  # seconds a SIGTERM may take: the daemon's 20 s grace, plus start-up slack


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    (project_dir / "automator.toml").write_text(SETTINGS, encoding="utf-8")
    return project_dir


@pytest.fixture
def daemon_env(process_env: dict[str, str], smtp_server: LoopbackSmtpServer) -> dict[str, str]:
    return {**process_env, "AUTOMATOR_SMTP_URL": smtp_server.url(timeout=5)}


class DaemonProcess:
    """One `automator run` subprocess; its log (stderr) goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as stderr:
            self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)

    def lines(self) -> list[dict[str, Any]]:
        """The complete JSON log lines written so far."""
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def logged(self, message: str) -> bool:
        return any(line["message"] == message for line in self.lines())

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `condition` until it holds; fail if the deadline passes or the daemon dies."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the daemon exited ({self.process.returncode}) before {what}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP) -> tuple[int, float]:
        """Send `signum`; the exit code and how long the daemon took to exit."""
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started

    def tail(self) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8").splitlines()[-20:])


@pytest.fixture
def start_daemon(
    project_dir: Path, daemon_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., DaemonProcess]]:
    """Start `automator run --log-format json` in the project; kills what is left at the end."""
    started: list[DaemonProcess] = []

    def start(*options: str, env: dict[str, str] | None = None) -> DaemonProcess:
        args = [*AUTOMATOR, "--project", str(project_dir), "run", "--log-format", "json"]
        args += ["--dispatch-interval", "0.2", *options]
        daemon = DaemonProcess(args, env or daemon_env, tmp_path / f"daemon-{len(started) + 1}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)


@pytest.fixture
def carts_due(make_contact: Callable[..., int], make_event: Callable[..., str]) -> Callable[[int], list[str]]:
    """`carts_due(n)`: n contacts, each with a cart left two hours ago (a reminder is due now)."""

    def make(n: int) -> list[str]:
        at = datetime.now(UTC) - timedelta(hours=2)
        emails = [f"shopper{i:03d}@example.com" for i in range(n)]
        for i, email in enumerate(emails):
            make_contact(email)
            make_event("cart_updated", at, email=email, id=f"cart-{i}", **cart(f"c{i}"))
        return emails

    return make


def all_messages(store: Store) -> list[Any]:
    with store.session() as session:
        return messages.listing(session, QueueFilter(limit=10_000))


def open_in_transport(env: dict[str, str]) -> int:
    """How many emails a daemon's SMTP transport can have open (sent, outcome not recorded):
    one on the wire per connection, and one more per connection while its record commits
    (the transport waits for that record before its next email)."""
    return 2 * SmtpSettings.from_url(env["AUTOMATOR_SMTP_URL"]).connections


def message_ids_received(server: LoopbackSmtpServer) -> dict[str, list[str]]:
    """Recipient → the Message-ID of every copy the server accepted for it."""
    found: dict[str, list[str]] = defaultdict(list)
    for received in list(server.messages):
        for recipient in received.rcpt_tos:
            found[recipient].append(str(received.message["Message-ID"]).strip())
    return found


class InProcessDaemon:
    """A daemon on the test's event loop, with a short grace (0.5 s) and quick ticks (0.1 s)
    and dispatches (0.05 s), sending to `smtp_server` with a 30 s timeout."""

    def __init__(self, project: Project, store: Store, smtp_server: LoopbackSmtpServer) -> None:
        self.transport = SmtpTransport(SmtpSettings.from_url(smtp_server.url(timeout=30)))
        options = DaemonOptions(tick_interval=0.1, dispatch_interval=0.05, shutdown_grace=0.5)
        self.running = asyncio.create_task(Daemon(Engine(project, store, self.transport), options).run())

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition` until it holds; fail if STARTUP passes or the daemon ends."""
        deadline = time.monotonic() + STARTUP
        while not condition():
            assert not self.running.done(), f"the daemon ended before the {what}"
            assert time.monotonic() < deadline, f"no {what} within {STARTUP:g} s"
            await asyncio.sleep(0.05)

    async def sigterm(self) -> None:
        """SIGTERM (caught by the daemon's handler on this loop), and wait for it to end."""
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(self.running, STOP)
        await asyncio.wait_for(self.transport.close(), STOP)


@pytest.mark.sqlite_only  # the single-daemon lock re-queues at start-up; on PostgreSQL leases expire
def test_a_daemon_killed_mid_batch_loses_nothing_and_resends_with_the_same_message_id(
    start_daemon, carts_due, smtp_server, store, daemon_env, capsys, record_property
) -> None:
    addresses = carts_due(BATCH_OF)
    smtp_server.hold_seconds = 0.02  # slow enough to catch the batch half-sent
    first = start_daemon()
    # Half the batch at the server, and the first of it recorded `sent`: outcomes are
    # recorded as the server answers, a commit at a time.
    first.wait_until(
        lambda: len(smtp_server.messages) >= 150 and statuses(store).get("sent", 0) > 0,
        STARTUP + DELIVERY,
        "150 at the server, some recorded sent",
    )

    first.stop(signal.SIGKILL, timeout=10)

    arrived_before_restart = len(smtp_server.messages)
    in_flight = {m.id for m in all_messages(store) if m.status == "sending"}
    assert arrived_before_restart < BATCH_OF, "the kill came after the batch: nothing was in flight"
    assert in_flight, "the kill left nothing in flight"
    recorded_before_kill = {m.id for m in all_messages(store) if m.status == "sent"}
    assert recorded_before_kill and len(in_flight) + len(recorded_before_kill) == BATCH_OF

    smtp_server.hold_seconds = 0
    second = start_daemon()
    second.wait_until(
        lambda: statuses(store).get("sent") == BATCH_OF, STARTUP + DELIVERY, f"all {BATCH_OF} messages sent"
    )
    code, _ = second.stop()

    received = message_ids_received(smtp_server)
    sent = {m.email: m for m in all_messages(store)}
    duplicates = len(smtp_server.messages) - BATCH_OF
    open_at_kill = open_in_transport(daemon_env)
    record_property("duplicates", duplicates)
    with capsys.disabled():
        print(
            f"\nSIGKILL mid-batch of {BATCH_OF}: {arrived_before_restart} delivered before the kill, "
            f"{len(in_flight)} claimed and not recorded, at most {open_at_kill} open in the transport, "
            f"{duplicates} duplicate(s), each with its original Message-ID"
        )
    assert code == 0
    assert statuses(store) == {"sent": BATCH_OF}
    assert sorted(received) == sorted(addresses)  # every message arrived
    for address, ids in received.items():
        assert set(ids) == {sent[address].message_id}  # a copy is never a new message
        if len(ids) > 1:
            assert sent[address].id in in_flight  # only what was in flight can arrive twice
            assert sent[address].id not in recorded_before_kill
    assert 0 <= duplicates <= open_at_kill
    assert second.logged("re-queued messages a stopped daemon left in flight")


def test_sigterm_mid_batch_exits_0_promptly_and_leaves_nothing_sending(
    start_daemon, carts_due, smtp_server, store
) -> None:
    carts_due(BATCH_OF)
    smtp_server.hold_seconds = 0.02
    daemon = start_daemon()
    daemon.wait_until(
        lambda: len(smtp_server.messages) >= 50, STARTUP + DELIVERY, "50 messages at the server"
    )

    code, seconds = daemon.stop(signal.SIGTERM)

    received = message_ids_received(smtp_server)
    counts = statuses(store)
    assert code == 0
    assert seconds < STOP
    assert "sending" not in counts
    assert set(counts) <= {"sent", "queued"}
    # What was claimed was finished, not abandoned: each sent message arrived exactly once.
    sent = {m.email for m in all_messages(store) if m.status == "sent"}
    assert sent == set(received)
    assert all(len(ids) == 1 for ids in received.values())
    assert daemon.logged("daemon stopped")


def test_sigterm_during_a_stalled_send_puts_the_message_back_within_the_grace(
    project: Project, store: Store, carts_due, smtp_server, caplog
) -> None:
    """In process, to shorten the 20 s grace: a send that outlasts it is abandoned, and its
    message goes back to the queue instead of staying `sending` until its lease expires."""
    carts_due(1)
    smtp_server.mode, smtp_server.stall_seconds = "stall", 30

    async def stop_while_stalled() -> float:
        # Ticks run on while the send stalls; the shutdown waits for both, within the grace.
        daemon = InProcessDaemon(project, store, smtp_server)
        await daemon.until(lambda: statuses(store).get("sending") == 1, "claim of the message")
        started = time.monotonic()
        await daemon.sigterm()
        return time.monotonic() - started

    seconds = asyncio.run(stop_while_stalled())

    [message] = all_messages(store)
    with store.session() as session:
        last = messages.history(session, message.id)[-1]
    assert seconds < 0.5 + 5 + 2  # the grace, the cancelled send unwinding, slack
    assert message.status == "queued"
    assert message.lease_until is None
    assert last.reason == "daemon stopped before the send finished; will be sent again"
    assert smtp_server.messages == []
    # An expected end, said as such: no job "raised an exception" with a traceback.
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert any("dispatch cut short by the shutdown" in record.getMessage() for record in caplog.records)


def test_a_hung_smtp_server_does_not_stop_the_rules_being_evaluated(
    project: Project, store: Store, carts_due, make_contact, make_event, smtp_server
) -> None:
    """A send that hangs holds the dispatch, not the ticks: a cart left while it hangs is
    queued by the next tick, to go out once the server answers again."""
    carts_due(1)
    smtp_server.mode, smtp_server.stall_seconds = "stall", 30

    async def cart_left_during_the_stall() -> dict[str, int]:
        daemon = InProcessDaemon(project, store, smtp_server)
        await daemon.until(lambda: statuses(store).get("sending") == 1, "claim of the message")
        make_contact("late@example.com")
        left = datetime.now(UTC) - timedelta(hours=2)
        make_event("cart_updated", left, email="late@example.com", id="cart-late", **cart("late"))
        await daemon.until(lambda: statuses(store).get("queued") == 1, "tick queueing the cart")
        during = statuses(store)
        await daemon.sigterm()
        return during

    assert asyncio.run(cart_left_during_the_stall()) == {"sending": 1, "queued": 1}
    assert smtp_server.messages == []
    assert statuses(store) == {"queued": 2}  # the hung one back in the queue at the stop


def test_a_tick_told_to_stop_leaves_nothing_half_queued_for_the_next_tick(
    engine: Engine, store: Store, carts_due
) -> None:
    """The daemon's shutdown sets the tick's stop: it ends before its next chunk, undoing
    what it had not committed, and the next tick queues all of it."""
    carts_due(3)
    stop = threading.Event()
    stop.set()
    now = datetime.now(UTC)

    with pytest.raises(Stopped):
        engine.evaluate(now, TickReport(now), stop)
    assert statuses(store) == {}

    engine.evaluate(now, TickReport(now))
    assert statuses(store) == {"queued": 3}


def test_sigint_stops_the_daemon_like_sigterm(start_daemon) -> None:
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("daemon started"), STARTUP, "start")

    code, _ = daemon.stop(signal.SIGINT)

    assert code == 0
    assert daemon.logged("daemon stopped")


@pytest.mark.sqlite_only  # one daemon per SQLite file
@pytest.mark.parametrize("path", ["same", "symlink", "hard link"])
def test_a_second_daemon_on_the_same_sqlite_refuses_to_start(
    start_daemon, project_dir, daemon_env, database_url, tmp_path, path
) -> None:
    first = start_daemon()
    first.wait_until(lambda: first.logged("daemon started"), STARTUP, "start")
    env = dict(daemon_env)
    if path != "same":  # another name for the same file, in another folder
        link = tmp_path / "elsewhere" / "link.db"
        link.parent.mkdir()
        database = make_url(database_url).database or ""
        link.symlink_to(database) if path == "symlink" else link.hardlink_to(database)
        env["AUTOMATOR_DATABASE_URL"] = f"sqlite:///{link}"

    second = subprocess.run(
        [*AUTOMATOR, "--project", str(project_dir), "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP,
    )

    assert second.returncode == 1
    assert second.stderr.startswith(
        f"error: another automator daemon (pid {first.process.pid} on {socket.gethostname()}) "
        "is already running on this SQLite database"
    )
    assert first.process.poll() is None  # the first one is unaffected
    assert first.stop()[0] == 0


@pytest.mark.sqlite_only  # one daemon per SQLite file
def test_status_sees_the_daemon_through_a_hard_link_to_its_database(store, database_url, tmp_path) -> None:
    link = tmp_path / "link.db"
    link.hardlink_to(make_url(database_url).database or "")
    lock = SingleDaemonLock(database_url)
    lock.acquire()
    try:
        assert SingleDaemonLock(f"sqlite:///{link}").is_held()
    finally:
        lock.release()
    assert not SingleDaemonLock(f"sqlite:///{link}").is_held()


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf"])
@pytest.mark.parametrize("option", ["--tick-interval", "--dispatch-interval"])
def test_an_interval_that_is_no_positive_number_of_seconds_is_refused(cli, option, value) -> None:
    result = cli("run", option, value)

    assert result.exit_code == 2
    assert f"{value} is not between 0.1 and 86400 seconds" in result.stderr


def test_status_shows_whether_a_daemon_is_running(start_daemon, cli) -> None:
    assert cli("status").output.startswith("daemon: not running\n")
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("tick"), STARTUP, "the first tick")

    running = cli("status").output

    assert running.startswith(f"daemon: running ({socket.gethostname()}:{daemon.process.pid})\n")
    assert "last tick: never" not in running
    daemon.stop()
    assert cli("status").output.startswith("daemon: not running\n")


def test_status_says_a_killed_daemon_is_not_running(start_daemon, cli) -> None:
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("tick"), STARTUP, "the first tick")

    daemon.stop(signal.SIGKILL, timeout=10)  # its heartbeat still says running

    assert cli("status").output.startswith("daemon: not running\n")


def test_a_future_tick_beside_a_killed_daemon_is_not_refused(start_daemon, cli) -> None:
    """`tick` tells a live daemon from a killed one as `status` does: by its lock."""
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("tick"), STARTUP, "the first tick")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    refused = cli("tick", "--now", tomorrow)  # acts on nothing: the project has no contact

    daemon.stop(signal.SIGKILL, timeout=10)  # its heartbeat still says running
    ticked = cli("tick", "--now", tomorrow)

    assert (
        refused.exit_code == 1 and f"a daemon serves this database ({socket.gethostname()}:" in refused.output
    )
    assert ticked.exit_code == 0, ticked.output


def test_every_log_line_is_json_with_one_line_per_tick_and_per_delivery_failure(
    start_daemon, carts_due, smtp_server, store
) -> None:
    carts_due(3)
    smtp_server.mode = "tempfail"
    daemon = start_daemon()
    daemon.wait_until(lambda: daemon.logged("delivery failure"), STARTUP, "a delivery failure line")

    assert daemon.stop()[0] == 0

    text = daemon.log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]  # fails on any non-JSON line
    by_message = Counter(line["message"] for line in lines)
    assert by_message["tick"] >= 1
    tick = next(line for line in lines if line["message"] == "tick")
    assert tick["level"] == "info"
    assert tick["rules"]["abandoned_cart"]["enqueued"] == 3
    failure = next(line for line in lines if line["message"] == "delivery failure")
    assert failure["level"] == "warning"
    assert failure["rule"] == "abandoned_cart"
    assert failure["outcome"].startswith("retrying")
    assert statuses(store) == {"queued": 3}


def test_the_unsubscribe_link_of_a_sent_email_works_against_the_running_daemon(
    start_daemon, carts_due, smtp_server, store, daemon_env
) -> None:
    [address] = carts_due(1)
    port = free_port()
    env = {**daemon_env, "AUTOMATOR_BASE_URL": f"http://127.0.0.1:{port}"}
    daemon = start_daemon("--listen", f"127.0.0.1:{port}", env=env)
    daemon.wait_until(lambda: len(smtp_server.messages) == 1, STARTUP, "the reminder at the server")
    header = str(smtp_server.messages[0].message["List-Unsubscribe"])
    link = header.split("<", 1)[1].split(">", 1)[0]
    assert urlsplit(link).netloc == f"127.0.0.1:{port}"

    response = httpx.post(link, content="List-Unsubscribe=One-Click", timeout=10)

    assert response.status_code == 200
    with store.session() as session:
        found = suppressions.get(session, address)
    assert found is not None and found.reason == "unsubscribed"
    assert daemon.stop()[0] == 0


def test_the_daemon_serves_health_until_sigterm(start_daemon, carts_due, smtp_server, store) -> None:
    carts_due(2)
    port = free_port()
    daemon = start_daemon("--listen", f"127.0.0.1:{port}")
    daemon.wait_until(lambda: statuses(store).get("sent") == 2, STARTUP, "both messages sent")

    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)

    assert health.status_code == 200
    assert health.json() == {"status": "ok", "queue": {"sent": 2}}
    assert daemon.logged("serving http")
    assert daemon.stop()[0] == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_sigterm_answers_a_request_whose_body_stalls_and_exits_promptly(start_daemon, cli) -> None:
    """A client that sent a POST's headers and part of its body, and then nothing, does not
    hold the shutdown for the whole grace (20 s): it is answered 503 and closed."""
    key = cli("keys", "create", "shop", "--scope", "events:write").output.splitlines()[-1]
    port = free_port()
    daemon = start_daemon("--listen", f"127.0.0.1:{port}")
    daemon.wait_until(lambda: daemon.logged("serving http"), STARTUP, "serving http")
    with socket.create_connection(("127.0.0.1", port), timeout=STOP) as client:
        head = f"POST /v1/events HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {key}\r\n"
        client.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
        # Answered once the request above is read (it came first on the same event loop).
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200

        code, seconds = daemon.stop()
        answer = client.recv(1000)

    assert code == 0
    assert seconds < 8  # the shutdown's own steps and slack, far from the 20 s grace
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert [line["level"] for line in daemon.lines() if line["level"] not in ("info", "debug")] == []
    assert "Traceback" not in daemon.log.read_text(encoding="utf-8")


def test_a_listen_address_in_use_is_a_clear_error(project_dir, daemon_env) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*AUTOMATOR, "--project", str(project_dir), "run", "--listen", f"127.0.0.1:{port}"],
            env=daemon_env,
            capture_output=True,
            text=True,
            timeout=STARTUP,
        )

    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_a_listen_address_that_is_not_host_port_is_refused(cli) -> None:
    result = cli("run", "--listen", "localhost")

    assert result.exit_code == 1
    assert 'error: --listen "localhost" is not HOST:PORT' in result.output


def test_a_start_or_stop_step_cut_off_by_the_database_is_tried_once_more(caplog) -> None:
    from sqlalchemy.exc import DBAPIError

    from automator.daemon import _once_more_if_cut_off

    calls: list[int] = []

    def cut_off_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise DBAPIError(
                "INSERT INTO heartbeat …",
                {},
                Exception("terminating connection"),
                connection_invalidated=True,
            )

    _once_more_if_cut_off(cut_off_once)

    assert len(calls) == 2
    assert any("the database cut the connection off" in record.getMessage() for record in caplog.records)

    def refused() -> None:  # an error that is not a dropped connection is not hidden
        raise DBAPIError("INSERT INTO heartbeat …", {}, Exception("permission denied"))

    with pytest.raises(DBAPIError):
        _once_more_if_cut_off(refused)
