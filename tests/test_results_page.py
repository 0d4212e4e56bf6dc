"""The console's Results page in a real browser (Debian's chromium, driven by Playwright): the
report's table per rule, step and variant, the A/B verdict, and a chart of sends and
conversions per day drawn as inline SVG with a text alternative; it passes axe.

`AUTOMATOR_SCREENSHOTS=docs/screenshots` saves docs/screenshots/results.png."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from automator.engine import Engine
from automator.project import load_project
from automator.store import Store
from automator.testing import RecordingTransport
from tests import test_console_browser as browser
from tests.conftest import utc
from tests.logins import log_in_page
from tests.test_report import PROMO_RULE, put_message

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

chromium, page, screenshots = browser.chromium, browser.page, browser.screenshots

# The markup does not depend on the database: one store is enough.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.usefixtures("cheap_password_hashing")]

FIRST_DAY = utc("2026-11-08 03:00")  # two weeks of sends before the console's NOW


@pytest.fixture
def results_console(
    project_dir: Path,
    environ: dict[str, str],
    store: Store,
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
) -> Iterator[str]:
    """Two weeks of an A/B promotion (a converts 50 %, b 20 %) and a few cart reminders."""
    from tests.conftest import write_note_template

    write_note_template(project_dir)
    (project_dir / "rules" / "promo_ab.yaml").write_text(PROMO_RULE, encoding="utf-8")
    project = load_project(project_dir, environ)
    for number in range(80):
        email, sent_at = f"c{number}@example.com", FIRST_DAY + timedelta(days=number % 12, hours=number % 5)
        variant = "a" if number % 2 else "b"
        put_message(store, make_contact(email), email, rule="promo_ab", variant=variant, sent_at=sent_at)
        if (variant == "a" and number % 4 == 1) or (variant == "b" and number % 10 == 0):
            total, currency = (5, "USD") if number % 3 else (450_000, "VND")
            make_event("order_placed", sent_at + timedelta(hours=20), email, id=f"o{number}", total=total,
                       currency=currency)  # fmt: skip
        if number < 10:
            put_message(store, make_contact(email), email, sent_at=sent_at + timedelta(days=1))
    yield from browser.serve(project, store, Engine(project, store, RecordingTransport()))


def test_the_results_page_shows_the_table_the_verdict_and_a_chart(
    results_console: str, page: Any, screenshots: Path
) -> None:
    from tests.test_console_accessibility import violations

    log_in_page(page, results_console)
    page.get_by_role("link", name="Results").click()

    expect(page.locator("h1")).to_have_text("Results")
    promo = page.locator("section", has=page.get_by_role("heading", name="promo_ab"))
    expect(promo.locator("table.results tbody tr")).to_have_count(3)  # a, b and all
    expect(promo.locator("table.results tbody tr").nth(0)).to_contain_text("40")
    expect(promo.get_by_text("Step 1: a converts better than b (50.0 % vs 20.0 %)")).to_be_visible()
    expect(promo.locator("table.results")).to_contain_text("$")
    expect(promo.locator("table.results")).to_contain_text("₫")
    chart = promo.get_by_role("img", name="promo_ab: sends and conversions per day")
    expect(chart).to_be_visible()
    assert promo.locator("svg[role=img] rect").count() >= 12 + 5  # a bar per day sent, some converted
    promo.get_by_text("Sends and conversions per day, as a table").click()
    expect(promo.locator("details table tbody tr").first).to_contain_text("2026-11-08")
    assert violations(page) == []
    page.screenshot(path=str(screenshots / "results.png"), full_page=True)
