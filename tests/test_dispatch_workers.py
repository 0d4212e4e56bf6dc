"""A claim's emails are built on the render workers when it has enough of them: each email is
the one its message and contact make, and a message whose email must not be built is held
there as it is in the dispatcher's own process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy import text, update

from automator import emails
from automator.engine import Engine
from automator.rendering import POOL_MIN
from automator.reports import TickReport
from automator.store import Store
from automator.store.messages import CONTENT
from automator.testing import RecordingTransport
from tests.conftest import all_messages, cart, utc

EVIL = "Eve\r\nBcc: attacker@evil.test"


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    """One render worker, whatever the machine's cores."""
    return {**environ, "AUTOMATOR_RENDER_WORKERS": "1"}


def test_a_claims_emails_are_built_on_a_render_worker_and_refused_ones_held(
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
    store: Store,
    engine: Engine,
    tick: Callable[..., TickReport],
    transport: RecordingTransport,
) -> None:
    count = POOL_MIN + 6
    for n in range(count):
        email = f"shopper{n}@example.com"
        make_contact(email, first_name=f"Lan {n}")
        make_event("cart_updated", utc("2026-11-20 03:00"), email=email, id=f"cart-{n}", **cart(f"c{n}"))
    with store.engine.begin() as connection:  # as an older release's import could have stored it
        connection.execute(
            text("UPDATE contact SET first_name = :name WHERE email = :email"),
            {"name": EVIL, "email": "shopper1@example.com"},
        )
    engine.evaluate(utc("2026-11-20 04:00"), TickReport(utc("2026-11-20 04:00")))  # queued, not sent
    by_address = {message.email: message for message in all_messages(store)}
    packed = store.engine.dialect.name == "sqlite"  # PostgreSQL keeps bodies as text
    if packed:
        with store.engine.begin() as connection:
            broken = by_address["shopper2@example.com"].id
            connection.execute(
                update(CONTENT).where(CONTENT.c.message_id == broken).values(html_body=b"not LZ4")
            )

    up = engine.render_pool.warm()  # as a daemon's: a pool nobody warmed starts late
    assert up is not None
    up.result(timeout=60)
    report = tick(utc("2026-11-20 04:00"))

    refused = {"shopper1@example.com", "shopper2@example.com"} if packed else {"shopper1@example.com"}
    sent = {email["To"].addresses[0].addr_spec: email for email in transport.sent}
    assert set(sent) == set(by_address) - refused
    for address, email in sent.items():
        n = int(address.removeprefix("shopper").removesuffix("@example.com"))
        assert email["To"].addresses[0].display_name == f"Lan {n}"
        assert email["Message-ID"] == by_address[address].message_id
        assert f"https://shop.example.com/cart/c{n}" in email.get_body(("html",)).get_content()
        # The boundary carries the token of the process that built the email.
        assert not email.get_boundary().startswith(f"=_automator_{emails._process_token:016x}")
    after = {message.email: message for message in all_messages(store)}
    assert (after["shopper1@example.com"].status, after["shopper1@example.com"].hold_kind) == (
        "held",
        "header",
    )
    outcomes = report.rules["abandoned_cart"].outcomes
    assert outcomes["held: unsafe header"] == 1
    if packed:
        assert (after["shopper2@example.com"].status, after["shopper2@example.com"].hold_kind) == (
            "held",
            "render",
        )
        assert outcomes["held: unreadable body"] == 1


def test_what_a_render_worker_imports_to_build_emails_leaves_sqlalchemy_out() -> None:
    """A worker holds the templates, not the store: building emails there must not cost it
    SQLAlchemy's tens of megabytes."""
    check = (
        "import sys, automator.letters; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in {'sqlalchemy', 'sqlmodel'} or m.startswith('automator.store')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )

    assert found.stdout.strip() == "[]"
