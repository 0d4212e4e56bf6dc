"""`automator tick --now` in the future really acts, so where that reaches people (SMTP) or
a daemon's database it refuses without --force and points to `automator simulate`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automator.daemon_lock import SingleDaemonLock
from automator.store import heartbeats
from tests.conftest import cart, statuses

NOW = datetime.now(UTC).replace(microsecond=0)
TOMORROW = (NOW + timedelta(days=1)).isoformat()


@pytest.fixture
def lan_cart(make_contact, make_event):
    """A cart whose reminder falls due in two hours."""
    make_contact("lan@example.com", first_name="Lan")
    make_event("cart_updated", NOW + timedelta(hours=1), id="evt-1", **cart())


@pytest.fixture
def over_smtp(monkeypatch, smtp_server):
    monkeypatch.setenv("AUTOMATOR_SMTP_URL", smtp_server.url())
    return smtp_server


@pytest.fixture
def daemon_serving(database_url, store):
    """A daemon on the database: on SQLite the lock it holds, on PostgreSQL its heartbeat
    and the lock it holds while it runs."""
    if database_url.startswith("sqlite"):
        lock = SingleDaemonLock(database_url)
        lock.acquire()
        yield
        lock.release()
        return
    with store.session() as session:
        heartbeats.beat(session, "host:1", "running", datetime.now(UTC), None)
    with heartbeats.alive(store, "host:1"):
        yield


def test_a_future_tick_over_smtp_refuses_and_points_to_simulate(lan_cart, over_smtp, cli, store):
    result = cli("tick", "--now", TOMORROW)

    assert result.exit_code == 1
    assert "SMTP is configured" in result.output
    assert f"automator simulate --from {TOMORROW}" in result.output
    assert statuses(store) == {}
    assert over_smtp.connections == 0


def test_a_future_tick_beside_a_daemon_refuses(lan_cart, daemon_serving, cli, store):
    result = cli("tick", "--now", TOMORROW)

    assert result.exit_code == 1
    assert "a daemon serves this database" in result.output
    assert "--force" in result.output
    assert statuses(store) == {}


def test_a_future_tick_with_force_really_acts(lan_cart, over_smtp, daemon_serving, cli, store):
    result = cli("tick", "--now", TOMORROW, "--force")

    assert result.exit_code == 0, result.output
    assert sum(statuses(store).values()) == 1  # tomorrow's reminder, queued (or sent) today


def test_a_tick_a_few_seconds_ahead_is_not_the_future(lan_cart, over_smtp, cli, store):
    result = cli("tick", "--now", (datetime.now(UTC) + timedelta(seconds=30)).isoformat())

    assert result.exit_code == 0, result.output


def test_a_future_tick_on_a_quiet_database_with_the_outbox_acts(lan_cart, cli, store):
    result = cli("tick", "--now", TOMORROW)

    assert result.exit_code == 0, result.output
    assert sum(statuses(store).values()) == 1


def test_a_fresh_heartbeat_without_its_lock_is_no_daemon(lan_cart, cli, store, database_url):
    """A daemon killed outright leaves its heartbeat saying `running`, and lets its lock go."""
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite the daemon's lock tells, not its heartbeat")
    with store.session() as session:
        heartbeats.beat(session, "gone:1", "running", datetime.now(UTC), None)

    assert cli("tick", "--now", TOMORROW).exit_code == 0
