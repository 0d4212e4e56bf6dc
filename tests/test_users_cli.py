"""An operator manages who may log in to the console from the command line: list, add,
remove, change a password or a role. Every change is in the audit log with who made it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automator.cli import app
from automator.console.auth import hash_password, password_matches
from automator.store import Store, audit, users
from tests.conftest import utc

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new and longer password"
NOW = utc("2026-11-20 01:00")


@pytest.fixture(autouse=True)
def quick_hashing(cheap_password_hashing: None) -> None:
    """Every test here logs in or adds users: with the cheapest Argon2 settings."""


@pytest.fixture
def cli(project_dir: Path, environ: dict[str, str]) -> Callable[..., Any]:
    """The real `automator` CLI in the project folder, with what it reads from stdin."""

    def run(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(app, ["--project", str(project_dir), *args], input=input)

    return run


@pytest.fixture
def accounts(store: Store) -> None:
    with store.session() as session:
        users.add(session, "sam", hash_password(PASSWORD), "support", NOW)
        users.add(session, "ada", hash_password(PASSWORD), "admin", NOW)


def user(store: Store, name: str) -> Any:
    with store.session() as session:
        return users.get(session, name)


def audited(store: Store, action: str) -> list[tuple[str, str]]:
    with store.session() as session:
        return [(entry.actor, entry.reason) for entry in audit.for_action(session, action)]


# ---------------------------------------------------------------- list


def test_users_list_shows_every_user_with_their_role(cli, accounts) -> None:
    result = cli("users", "list")

    assert result.exit_code == 0
    assert re.search(r"^ada\tadmin\t", result.output, re.M)
    assert re.search(r"^sam\tsupport\t", result.output, re.M)
    assert "2 users" in result.output


# ---------------------------------------------------------------- add


def test_users_add_is_audited_with_who_added(cli, store) -> None:
    result = cli(
        "users", "add", "mai", "--role", "support", "--password-stdin", "--by", "ops-lan", input=PASSWORD
    )

    assert result.exit_code == 0, result.output
    assert audited(store, "add user") == [("ops-lan", "mai (support)")]


# ---------------------------------------------------------------- remove


def test_users_remove_removes_the_user_and_audits_who_did_it(cli, accounts, store) -> None:
    result = cli("users", "remove", "sam", "--by", "ops-lan")

    assert result.exit_code == 0, result.output
    assert "removed sam" in result.output
    assert user(store, "sam") is None
    assert user(store, "ada") is not None
    assert audited(store, "remove user") == [("ops-lan", "sam")]


def test_users_remove_is_done_by_cli_unless_told(cli, accounts, store) -> None:
    cli("users", "remove", "sam")

    assert audited(store, "remove user") == [("cli", "sam")]


def test_users_remove_of_an_unknown_user_is_a_clear_error(cli, accounts, store) -> None:
    result = cli("users", "remove", "mallory")

    assert result.exit_code == 1
    assert "error: no console user named mallory (users: ada, sam)" in result.output
    assert audited(store, "remove user") == []


# ---------------------------------------------------------------- passwd


def test_users_passwd_reads_the_new_password_from_stdin(cli, accounts, store) -> None:
    result = cli("users", "passwd", "sam", "--password-stdin", "--by", "ops-lan", input=f"{NEW_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "changed the password of sam" in result.output
    changed = user(store, "sam")
    assert password_matches(changed.password_hash, NEW_PASSWORD)
    assert not password_matches(changed.password_hash, PASSWORD)
    assert audited(store, "change password") == [("ops-lan", "sam")]


def test_users_passwd_asks_for_the_new_password_twice(cli, accounts, store) -> None:
    result = cli("users", "passwd", "sam", input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert password_matches(user(store, "sam").password_hash, NEW_PASSWORD)


def test_users_passwd_of_an_unknown_user_is_a_clear_error(cli, accounts, store) -> None:
    result = cli("users", "passwd", "mallory", "--password-stdin", input=f"{NEW_PASSWORD}\n")

    assert result.exit_code == 1
    assert "error: no console user named mallory (users: ada, sam)" in result.output
    assert audited(store, "change password") == []


def test_users_passwd_refuses_a_short_password(cli, accounts, store) -> None:
    result = cli("users", "passwd", "sam", "--password-stdin", input="short\n")

    assert result.exit_code == 1
    assert "at least 8 characters" in result.output
    assert password_matches(user(store, "sam").password_hash, PASSWORD)


# ---------------------------------------------------------------- role


def test_users_role_changes_the_role_and_audits_it(cli, accounts, store) -> None:
    result = cli("users", "role", "sam", "admin", "--by", "ops-lan")

    assert result.exit_code == 0, result.output
    assert "sam is now admin" in result.output
    assert user(store, "sam").role == "admin"
    assert audited(store, "change role") == [("ops-lan", "sam: support → admin")]


def test_users_role_refuses_an_unknown_role(cli, accounts, store) -> None:
    result = cli("users", "role", "sam", "boss")

    assert result.exit_code == 1
    assert "error: unknown role boss (roles: support, admin)" in result.output
    assert user(store, "sam").role == "support"
    assert audited(store, "change role") == []


def test_users_role_of_an_unknown_user_is_a_clear_error(cli, accounts) -> None:
    result = cli("users", "role", "mallory", "admin")

    assert result.exit_code == 1
    assert "error: no console user named mallory (users: ada, sam)" in result.output
