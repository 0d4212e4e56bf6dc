"""Rendering a big chunk on worker processes gives exactly what rendering in the tick's own
process gives; a template error there holds only the message it happened in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from automator.engine import Engine
from automator.rendering import POOL_MIN, SLICE, Failed, RenderJob, RenderPool
from automator.templates import Rendered
from tests.conftest import all_messages, cart, utc

NOW = utc("2026-11-20 05:00")


@pytest.fixture
def pool(engine: Engine) -> Iterator[RenderPool]:
    pool = RenderPool(engine.renderer, workers=2)
    yield pool
    pool.close()


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
        job = engine.job(rule, _Fields(contact), None, NOW - timedelta(hours=1), NOW, event)
        jobs.append(job)
    return jobs


class _Fields:
    """A contact row as the enqueue reads it."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


def test_a_big_chunk_renders_on_workers_exactly_as_in_process(engine, pool) -> None:
    jobs = cart_jobs(engine, POOL_MIN + 6)

    in_workers = pool.render_each(jobs)

    assert pool._pool is not None  # the chunk went to the workers
    assert in_workers == engine.renderer.render_each(jobs)
    assert all(isinstance(result, Rendered) for result in in_workers)
    assert "Lan 0" in in_workers[0].text and "Anna 1" in in_workers[1].text


def test_the_caller_renders_the_slices_no_worker_has_taken_yet(engine, pool) -> None:
    jobs = cart_jobs(engine, SLICE * 12)

    rendering = pool.start(jobs)  # the workers are still starting: they take the first slices
    results = rendering.results()

    assert 0 < rendering.stolen < 12  # the caller took the last ones; the workers the first
    assert results == engine.renderer.render_each(jobs)  # in order, whoever rendered them
    assert all(f"Lan {index}" in results[index].text for index in range(0, len(jobs), 2))


def test_a_template_error_on_a_worker_fails_only_that_message(engine, pool) -> None:
    jobs = cart_jobs(engine, POOL_MIN)
    jobs[5] = replace(jobs[5], event={"cart_id": "c5"})  # no items, no total

    results = pool.render_each(jobs)

    failed = [index for index, result in enumerate(results) if isinstance(result, Failed)]
    assert failed == [5]
    reason = results[5].reason
    assert reason.startswith("template error: email_templates/abandoned_cart/") and "undefined" in reason


def test_a_small_chunk_stays_in_process(engine, pool) -> None:
    pool.render_each(cart_jobs(engine, POOL_MIN - 1))

    assert pool._pool is None


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
