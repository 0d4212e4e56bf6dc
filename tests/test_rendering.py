"""Rendering a big chunk on worker processes gives exactly what rendering in the tick's own
process gives, packed for SQLite and as text for PostgreSQL; a template error there holds
only the message it happened in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from automator import rendering
from automator.engine import Engine
from automator.packing import pack, unpack
from automator.rendering import POOL_MIN, SLICE, Failed, RenderJob, RenderPool, StoredContent
from tests.conftest import all_messages, cart, utc

NOW = utc("2026-11-20 05:00")


@pytest.fixture
def pool(engine: Engine) -> Iterator[RenderPool]:
    """Two workers, started and up, as a daemon's are once it has warmed them."""
    pool = RenderPool(engine.renderer, workers=2)
    up = pool.warm()
    assert up is not None
    up.result(timeout=60)
    yield pool
    pool.close()


@pytest.fixture
def cold_pool(engine: Engine) -> Iterator[RenderPool]:
    """Two workers nobody warmed, as a one-shot `automator tick`'s."""
    pool = RenderPool(engine.renderer, workers=2)
    yield pool
    pool.close()


def process_ids(items: list[int]) -> list[int]:
    """The process each item went through (a function the workers can import)."""
    return [os.getpid() for _ in items]


def cart_jobs(engine: Engine, count: int) -> list[RenderJob]:
    rule = engine.project.rule("abandoned_cart")
    assert rule is not None
    jobs = []
    for index in range(count):
        vietnamese = index % 2 == 0
        contact = {
            "email": f"shopper{index}@example.com",
            "first_name": f"Lan {index}" if vietnamese else f"Anna {index}",
            "last_name": None,
            "locale": "vi" if vietnamese else "en",
            "timezone": "Asia/Ho_Chi_Minh" if vietnamese else "America/New_York",
            "stage": "consideration",
            "attributes": {},
        }
        event = cart(f"c{index}", total=100_000 * (index + 1), currency="VND" if vietnamese else "USD")
        job = engine.renderer.job(rule, _Fields(contact), None, NOW - timedelta(hours=1), NOW, event)
        jobs.append(job)
    return jobs


class _Fields:
    """A contact row as the enqueue reads it."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


def test_a_big_chunk_renders_on_workers_exactly_as_in_process(engine, pool) -> None:
    jobs = cart_jobs(engine, POOL_MIN + 6)

    rendering = pool.start(jobs)
    for _, rendered in rendering._parts:
        rendered.result(timeout=60)  # on a worker: the caller has none left to take
    in_workers = rendering.results()

    assert rendering.stolen == 0
    assert in_workers == engine.renderer.store_each(jobs)
    assert all(isinstance(result, StoredContent) for result in in_workers)
    assert "Lan 0" in unpack(in_workers[0].text) and "Anna 1" in unpack(in_workers[1].text)
    first = engine.renderer.render(jobs[0])
    assert (unpack(in_workers[0].text), unpack(in_workers[0].html)) == (first.text, first.html)


def test_workers_pack_bodies_for_sqlite_and_leave_them_text_for_postgresql(engine, pool) -> None:
    jobs = cart_jobs(engine, POOL_MIN + 6)

    stored = pool.store_each(jobs)[0]

    first = engine.renderer.render(jobs[0])
    assert isinstance(stored, StoredContent)
    if engine.store.engine.dialect.name == "sqlite":
        assert (stored.text, stored.html) == (pack(first.text), pack(first.html))
    else:  # PostgreSQL compresses text itself: packed, it would be unpacked again to store it
        assert (stored.text, stored.html) == (first.text, first.html)


def test_the_caller_renders_the_slices_no_worker_has_taken_yet(engine, pool) -> None:
    jobs = cart_jobs(engine, SLICE * 12)

    rendering = pool.start(jobs)  # the workers take the first slices, one at a time each
    results = rendering.results()

    assert 0 < rendering.stolen < 12  # the caller took the last ones; the workers the first
    assert results == engine.renderer.store_each(jobs)  # in order, whoever rendered them
    assert all(f"Lan {index}" in unpack(results[index].text) for index in range(0, len(jobs), 2))


def test_a_template_error_on_a_worker_fails_only_that_message(engine, pool) -> None:
    jobs = cart_jobs(engine, POOL_MIN)
    jobs[5] = replace(jobs[5], event={"cart_id": "c5"})  # no items, no total

    results = pool.store_each(jobs)

    failed = [index for index, result in enumerate(results) if isinstance(result, Failed)]
    assert failed == [5]
    reason = results[5].reason
    assert reason.startswith("template error: email_templates/abandoned_cart/") and "undefined" in reason


def test_a_small_chunk_stays_in_process(engine, pool) -> None:
    assert pool.map(process_ids, list(range(POOL_MIN - 1))) == [os.getpid()] * (POOL_MIN - 1)


def test_a_pool_nobody_warmed_works_here_while_that_costs_less_than_starting_a_worker(
    engine, cold_pool
) -> None:
    items = list(range(POOL_MIN * 3))

    assert cold_pool.map(process_ids, items) == [os.getpid()] * len(items)
    assert cold_pool.store_each(cart_jobs(engine, POOL_MIN)) == engine.renderer.store_each(
        cart_jobs(engine, POOL_MIN)
    )

    assert cold_pool._pool is None  # no worker was started


def test_a_pool_starts_its_workers_once_the_work_done_here_pays_for_one(
    engine, cold_pool, monkeypatch
) -> None:
    monkeypatch.setattr(rendering, "WORTH_A_WORKER", 1e-9)  # any render done here pays for one
    items = list(range(POOL_MIN * 3))

    before = cold_pool.map(process_ids, items)
    cold_pool.store_each(cart_jobs(engine, POOL_MIN))  # done here: the workers start
    after = cold_pool.map(process_ids, items)  # waits for them, as the first work a daemon hands them

    assert before == [os.getpid()] * len(items)
    assert os.getpid() not in after


def test_a_tick_with_many_due_carts_queues_them_all_through_the_workers(
    make_contact, make_event, engine, pool, tick, store, transport
) -> None:
    engine.render_pool = pool
    count = POOL_MIN + 10
    for index in range(count):
        email = f"shopper{index}@example.com"
        make_contact(email, first_name=f"Shopper {index}", locale="en", timezone="Asia/Ho_Chi_Minh")
        make_event(
            "cart_updated", utc("2026-11-20 03:00"), email=email, id=f"cart-{index}", **cart(f"c{index}")
        )

    tick(NOW)

    assert engine.render_pool._pool is not None
    assert len(transport.sent) == count
    assert {message.status for message in all_messages(store)} == {"sent"}
    [email] = transport.to("shopper7@example.com")
    assert "Shopper 7" in email.get_body(("plain",)).get_content()


HOLD_A_POOL = """
import sys, time
from pathlib import Path
from automator.engine import Engine
from automator.project import load_project
from automator.transports.file import FileTransport

if __name__ == "__main__":
    project_dir, db = Path(sys.argv[1]), sys.argv[2]
    project = load_project(project_dir, {"AUTOMATOR_DATABASE_URL": f"sqlite:///{db}"})
    engine = Engine(project, project.open_store(), FileTransport(project_dir / "outbox"))
    engine.render_pool.warm().result()  # the worker is up
    print(*engine.render_pool._pool._processes, flush=True)
    time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet) is gone too.
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_render_workers_leave_when_the_tick_process_is_killed(project_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "hold_a_pool.py"
    script.write_text(HOLD_A_POOL, encoding="utf-8")
    parent = subprocess.Popen(
        [sys.executable, str(script), str(project_dir), str(tmp_path / "automator.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers and all(alive(pid) for pid in workers)

        parent.send_signal(signal.SIGKILL)  # as the OOM killer would
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert not any(alive(pid) for pid in workers), "a render worker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(timeout=10)
