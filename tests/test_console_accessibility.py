"""The support console is usable by everyone: every page passes axe-core's WCAG 2.1 AA and
best-practice rules with no serious or critical violation, checked in Debian's chromium on a
store with real content (queued, held, sent, cancelled and suppressed mail, events, a rule
that does not load, a disabled one).

axe-core comes with axe-playwright-python (the test extra) and runs inside the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from automator import support
from automator.console.auth import hash_password
from automator.engine import Engine
from automator.project import Project, load_project
from automator.store import Store, messages, suppressions, users
from tests import test_console_browser as browser
from tests.conftest import utc

# The browser tests' fixtures: Debian's chromium, a fresh page in it, and a busy day of the shop.
chromium = browser.chromium
page = browser.page
busy_day = browser.busy_day
NOW, PASSWORD = browser.NOW, browser.PASSWORD

playwright = pytest.importorskip("playwright.sync_api")
axe = pytest.importorskip("axe_playwright_python.sync_playwright")
expect = playwright.expect

# The markup does not depend on the database: one store is enough.
pytestmark = pytest.mark.sqlite_only

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING = ("serious", "critical")

# A rule switched off, and one whose template folder does not exist: the rules page shows a
# badge for the first and the problem `automator check` reports for the second.
WINBACK = """\
id: winback
name: We miss you
stages: [loyalty]
trigger: {stage_entered: loyalty, delay: 90d}
send: {template: abandoned_cart}
enabled: false
"""
BIRTHDAY = """\
id: birthday
name: Happy birthday
stages: [retention, loyalty]
trigger: {date: contact.birthday}
send: {template: birthday_greeting}
"""


@pytest.fixture(autouse=True)
def quick_hashing(cheap_password_hashing: None) -> None:
    """Every test here logs in: with the cheapest Argon2 settings."""


@pytest.fixture
def project(project_dir: Path, environ: dict[str, str]) -> Project:
    (project_dir / "rules" / "winback.yaml").write_text(WINBACK, encoding="utf-8")
    (project_dir / "rules" / "birthday.yaml").write_text(BIRTHDAY, encoding="utf-8")
    return load_project(project_dir, environ)


@pytest.fixture
def console(busy_day: None, project: Project, store: Store, engine: Engine) -> Iterator[str]:
    """The busy day, plus a held reminder and a suppressed customer; ada is an admin, sam
    supports."""
    minh = _messages(store, "minh@example.com")
    queued = next(message for message in minh if message.status == "queued")
    support.hold(engine, queued.id, "Khách hỏi lại về size áo", "ada", utc("2026-11-20 15:03"))
    with store.session() as session:
        suppressions.add(session, "hoa@example.com", "unsubscribed", "clicked unsubscribe", NOW)
        users.add(session, "ada", hash_password(PASSWORD), "admin", NOW)
    yield from browser.serve(project, store, engine)


def _messages(store: Store, email: str) -> list[Any]:
    with store.session() as session:
        return messages.listing(session, messages.QueueFilter(email=email))


def log_in_as(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue$"))


def violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page, one line per element."""
    results = axe.Axe().run(page, options={"runOnly": {"type": "tag", "values": TAGS}})
    return [
        f"{found['id']} ({found['impact']}): {found['help']} at {' '.join(node['target'])}"
        for found in results.response["violations"]
        if found["impact"] in BLOCKING
        for node in found["nodes"]
    ]


def pages(store: Store) -> dict[str, str]:
    """Every kind of page the console has, with content in it: name → path."""
    lan = _messages(store, "lan@example.com")[0]
    minh = _messages(store, "minh@example.com")
    held = next(message for message in minh if message.status == "held")
    sent = next(message for message in minh if message.status == "sent")
    cancelled = _messages(store, "tuan@example.com")[0]
    hoa = _messages(store, "hoa@example.com")[0]
    return {
        "queue": "/queue",
        "queue of held messages": "/queue?status=held",
        "queue with nothing found": "/queue?q=nobody",
        "queued message": f"/messages/{lan.id}",
        "held message": f"/messages/{held.id}",
        "sent message": f"/messages/{sent.id}",
        "cancelled message": f"/messages/{cancelled.id}",
        "contact with events": f"/contacts/{lan.contact_id}",
        "contact with sent mail": f"/contacts/{sent.contact_id}",
        "suppressed contact": f"/contacts/{hoa.contact_id}",
        "contact search": "/contacts?q=h",
        "empty contact search": "/contacts",
        "rules": "/rules",
        "results": "/results",  # checked as soon as the console has it
        "bulk confirmation": "/queue/bulk?action=cancel",
        "page not found": "/messages/999999",
    }


def check(page: Any, console: str, paths: dict[str, str]) -> list[str]:
    """Visit each page; every blocking violation, named by its page."""
    found: list[str] = []
    for name, path in paths.items():
        response = page.goto(f"{console}{path}")
        if name == "results" and response.status == 404:
            continue
        found += [f"{name} ({path}): {violation}" for violation in violations(page)]
    return found


def test_every_page_an_admin_sees_passes_axe(console: str, page: Any, store: Store) -> None:
    found = check(page, console, {"login": "/login"})
    log_in_as(page, console, "ada")
    found += check(page, console, pages(store))
    assert found == [], "\n".join(found)


def test_pages_as_support_staff_see_them_pass_axe(console: str, page: Any, store: Store) -> None:
    """Support staff see fewer buttons, and notes on what only an admin may do."""
    log_in_as(page, console, "sam")
    shown = pages(store)
    names = ("queue", "held message", "suppressed contact", "rules", "page not found")
    found = check(page, console, {name: shown[name] for name in names})
    assert found == [], "\n".join(found)
