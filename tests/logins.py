"""Logging in to the console, as the console tests do it: the staff accounts (sam supports,
ada is an admin), a login over HTTP with the form's CSRF token, and one in a browser."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx2 as httpx
from fastapi.testclient import TestClient

from automator.console.auth import hash_password
from automator.store import Store, users

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
ROLES = {"sam": "support", "ada": "admin"}


def add_accounts(store: Store, at: datetime, *names: str) -> None:
    """Add staff accounts with PASSWORD: `names` (by default sam and ada) with their roles."""
    with store.session() as session:
        for name in names or ROLES:
            users.add(session, name, hash_password(PASSWORD), ROLES[name], at)


def client_for(app: Any, base_url: str = "http://testserver", **options: Any) -> TestClient:
    """A new browser (no cookies) on the console app; redirects are not followed."""
    return TestClient(app, base_url=base_url, follow_redirects=False, **options)


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    """Fill the login form in as a person would (the form's CSRF token included)."""
    form = client.get("/login")
    return client.post(
        "/login", data={"name": name, "password": password, "csrf_token": token_in(form), "next": "/queue"}
    )


def token_in(response: httpx.Response) -> str:
    found = TOKEN.search(response.text)
    assert found, "the page has no CSRF token"
    return found.group(1)


def act(client: TestClient, path: str, **data: str) -> httpx.Response:
    """Post an action from a page of the logged-in console (which carries the token)."""
    return client.post(path, data={"csrf_token": token_in(client.get("/rules")), **data})


def log_in_page(page: Any, url: str, name: str = "sam") -> None:
    """Log in in a browser page (Playwright): ask for the queue, fill the form, land on it."""
    from playwright.sync_api import expect

    page.goto(f"{url}/queue")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue$"))
