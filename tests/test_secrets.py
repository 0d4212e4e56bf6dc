"""The secret that signs unsubscribe links and console sessions: `automator run` (sending over
SMTP, or serving --listen or --console) and `automator console` refuse to start without one
of their own; the demo and a tick into the file outbox need none. Sessions and links are
signed with different keys, and a rotated secret keeps old links working, not old sessions."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

from automator import emails
from automator.config import load_settings
from automator.console import create_app as create_console
from automator.console.auth import hash_password
from automator.errors import ConfigError
from automator.project import load_project
from automator.store import Store, suppressions, users
from automator.web import create_app as create_web
from tests.conftest import utc
from tests.smtp_server import free_port

SCRIPT = Path(sys.executable).with_name("automator")
AUTOMATOR = (
    [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from automator.cli import app; app()"]
)
START = 30.0  # seconds a command may take to refuse, or to start

NEW = "new-secret-" + "a" * 40
OLD = "old-secret-" + "b" * 40
OLDER = "older-secret-" + "c" * 40
PASSWORD = "correct horse battery"
NOW = utc("2026-11-20 05:00")

WEAK = {
    "missing": "",
    "the old code default": "change-me",
    "the demo's": "demo-secret-change-me",
    "long, but still saying change-me": "please-change-me-0123456789abcdef0123456789",
    "31 characters": "0123456789abcdef0123456789abcde",
}


@pytest.fixture(autouse=True)
def quick_hashing(cheap_password_hashing: None) -> None:
    """Every test here logs in or adds users: with the cheapest Argon2 settings."""


@pytest.fixture
def without_secret(project_dir: Path, process_env: dict[str, str]) -> dict[str, str]:
    """The environment of a project whose automator.toml and environment set no secret."""
    settings = project_dir / "automator.toml"
    lines = settings.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith("secret")]
    settings.write_text("\n".join(kept) + "\n", encoding="utf-8")
    env = dict(process_env)
    env.pop("AUTOMATOR_SECRET", None)
    env.pop("AUTOMATOR_SMTP_URL", None)
    return env


def set_in_toml(project_dir: Path, line: str) -> None:
    """Add a line to the [automator] table of the project's automator.toml."""
    settings = project_dir / "automator.toml"
    text = settings.read_text(encoding="utf-8")
    assert text.count("[automator]\n") == 1
    settings.write_text(text.replace("[automator]\n", f"[automator]\n{line}"), encoding="utf-8")


def automator(project_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `automator` command; one that does not refuse is stopped at START."""
    return subprocess.run(
        [*AUTOMATOR, "--project", str(project_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=START,
    )


def assert_refused_with_advice(result: subprocess.CompletedProcess[str]) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "automator secret generate" in lines[0]
    assert "openssl rand -hex 32" in lines[0]
    assert "AUTOMATOR_SECRET" in lines[0] and "automator.toml" in lines[0]


# ---------------------------------------------------------------- refusing to start


@pytest.mark.parametrize("secret", WEAK.values(), ids=WEAK.keys())
def test_run_refuses_to_send_over_smtp_without_a_secret_of_its_own(project_dir, without_secret, secret):
    env = {**without_secret, "AUTOMATOR_SMTP_URL": "smtp://127.0.0.1:1", "AUTOMATOR_SECRET": secret}

    result = automator(project_dir, env, "run")

    assert_refused_with_advice(result)


def test_run_refuses_the_demo_secret_written_in_automator_toml(project_dir, without_secret) -> None:
    set_in_toml(project_dir, 'secret = "demo-secret-change-me"\n')
    env = {**without_secret, "AUTOMATOR_SMTP_URL": "smtp://127.0.0.1:1"}

    result = automator(project_dir, env, "run")

    assert_refused_with_advice(result)
    assert "example" in result.stderr


def test_run_refuses_to_serve_unsubscribe_links_without_a_secret(project_dir, without_secret) -> None:
    result = automator(project_dir, without_secret, "run", "--listen", f"127.0.0.1:{free_port()}")

    assert_refused_with_advice(result)


def test_run_refuses_to_serve_the_console_without_a_secret(project_dir, without_secret) -> None:
    env = {**without_secret, "AUTOMATOR_SECRET": WEAK["the demo's"]}

    result = automator(project_dir, env, "run", "--console", "--console-listen", f"127.0.0.1:{free_port()}")

    assert_refused_with_advice(result)


@pytest.mark.parametrize("secret", [WEAK["missing"], WEAK["31 characters"]], ids=["missing", "short"])
def test_the_console_refuses_to_start_without_a_secret(project_dir, without_secret, secret) -> None:
    env = {**without_secret, "AUTOMATOR_SECRET": secret}

    result = automator(project_dir, env, "console", "--port", str(free_port()))

    assert_refused_with_advice(result)


@pytest.mark.parametrize("weak", ["demo-secret-change-me", "short-old-secret"], ids=["example", "short"])
def test_run_refuses_to_accept_links_signed_with_a_weak_previous_secret(project_dir, without_secret, weak):
    env = {**without_secret, "AUTOMATOR_SECRET": NEW, "AUTOMATOR_SECRET_PREVIOUS": f"{OLD},{weak}"}

    result = automator(project_dir, env, "run", "--listen", f"127.0.0.1:{free_port()}")

    assert result.returncode == 1
    assert "secret_previous entry 2" in result.stderr
    assert all(secret not in result.stderr for secret in (NEW, OLD, weak))  # never a secret in a log


# ---------------------------------------------------------------- what needs no secret


def test_a_tick_into_the_file_outbox_needs_no_secret(project_dir, without_secret) -> None:
    result = automator(project_dir, without_secret, "tick", "--now", "2026-11-20T05:00:00Z")

    assert result.returncode == 0, result.stderr


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []

    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        log = (tmp_path / f"run-{len(processes)}.log").open("w")
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_run_into_the_file_outbox_without_listen_needs_no_secret(
    project_dir, without_secret, started, tmp_path
) -> None:
    process = started(
        [*AUTOMATOR, "--project", str(project_dir), "run", "--log-format", "json"], without_secret
    )
    log = tmp_path / "run-0.log"
    deadline = time.monotonic() + START
    while not any(json.loads(line)["message"] == "daemon started" for line in complete_lines(log)):
        assert process.poll() is None, log.read_text(encoding="utf-8")
        assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
        time.sleep(0.05)

    process.send_signal(signal.SIGTERM)

    assert process.wait(START) == 0


def complete_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n")]


# ---------------------------------------------------------------- making one


def test_secret_generate_prints_a_new_random_secret_each_time(cli) -> None:
    first, second = cli("secret", "generate"), cli("secret", "generate")

    assert first.exit_code == 0 and second.exit_code == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.output)
    assert first.output != second.output


def test_a_generated_secret_is_accepted(project_dir, without_secret, cli) -> None:
    env = {**without_secret, "AUTOMATOR_SECRET": cli("secret", "generate").output.strip()}

    with socket.create_server(("127.0.0.1", 0)) as taken:  # so that it stops once past the secret
        port = taken.getsockname()[1]
        result = automator(project_dir, env, "console", "--port", str(port))

    assert "secret" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


# ---------------------------------------------------------------- rotation


def settings_with(project_dir: Path, **environ: str) -> Any:
    return load_settings(project_dir, environ)


def test_previous_secrets_come_from_the_environment_separated_by_commas(project_dir) -> None:
    settings = settings_with(project_dir, AUTOMATOR_SECRET=NEW, AUTOMATOR_SECRET_PREVIOUS=f"{OLD}, {OLDER}")

    assert settings.secret_previous == [OLD, OLDER]


def test_previous_secrets_come_from_automator_toml_as_a_list(project_dir) -> None:
    set_in_toml(project_dir, f'secret_previous = ["{OLD}", "{OLDER}"]\n')

    assert settings_with(project_dir).secret_previous == [OLD, OLDER]


def test_previous_secrets_are_a_list_of_strings(project_dir) -> None:
    set_in_toml(project_dir, "secret_previous = 42\n")

    with pytest.raises(ConfigError, match="secret_previous"):
        settings_with(project_dir)


@pytest.fixture
def rotated(project_dir: Path, environ: dict[str, str]) -> Callable[..., Any]:
    """The project loaded with this secret and these previous ones, on the test's database."""

    def load(secret: str, *previous: str) -> Any:
        values = {**environ, "AUTOMATOR_SECRET": secret, "AUTOMATOR_SECRET_PREVIOUS": ",".join(previous)}
        return load_project(project_dir, values)

    return load


def one_click(client: TestClient, email: str, token: str) -> Any:
    return client.post(
        f"/unsubscribe?email={email}&token={token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_a_link_signed_with_a_previous_secret_still_unsubscribes(rotated, store: Store, make_contact):
    make_contact("lan@example.com")
    client = TestClient(create_web(rotated(NEW, OLD, OLDER), store, clock=lambda: NOW))

    response = one_click(client, "lan@example.com", emails.unsubscribe_token(OLDER, "lan@example.com"))

    assert response.status_code == 200
    with store.session() as session:
        found = suppressions.get(session, "lan@example.com")
    assert found is not None and found.reason == "unsubscribed"


def test_a_link_signed_with_the_current_secret_unsubscribes(rotated, store: Store, make_contact):
    make_contact("lan@example.com")
    client = TestClient(create_web(rotated(NEW, OLD), store, clock=lambda: NOW))

    response = one_click(client, "lan@example.com", emails.unsubscribe_token(NEW, "lan@example.com"))

    assert response.status_code == 200


def test_a_link_signed_with_a_secret_no_longer_listed_is_refused(rotated, store: Store, make_contact):
    make_contact("lan@example.com")
    client = TestClient(create_web(rotated(NEW, OLD), store, clock=lambda: NOW))

    response = one_click(client, "lan@example.com", emails.unsubscribe_token(OLDER, "lan@example.com"))

    assert response.status_code == 403
    with store.session() as session:
        assert suppressions.get(session, "lan@example.com") is None


def log_in(client: TestClient) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    data = {"name": "ada", "password": PASSWORD, "csrf_token": token.group(1), "next": "/queue"}
    assert client.post("/login", data=data).status_code == 303


@pytest.fixture
def ada(store: Store) -> None:
    with store.session() as session:
        users.add(session, "ada", hash_password(PASSWORD), "admin", NOW)


def test_a_session_signed_with_the_previous_secret_is_refused(rotated, store: Store, ada) -> None:
    before = TestClient(create_console(rotated(OLD), store, clock=lambda: NOW), follow_redirects=False)
    log_in(before)
    after = TestClient(create_console(rotated(NEW, OLD), store, clock=lambda: NOW), follow_redirects=False)
    after.cookies.set("automator_console", before.cookies["automator_console"])

    assert before.get("/queue").status_code == 200
    assert after.get("/queue").status_code == 303


@pytest.mark.parametrize("serializer", [URLSafeSerializer, URLSafeTimedSerializer])
def test_sessions_are_not_signed_with_the_key_of_unsubscribe_links(rotated, store: Store, ada, serializer):
    """Whoever learns the key of the links (it is the secret itself: the tokens in emails
    already sent must stay valid) still cannot sign a session."""
    project = rotated(NEW)
    client = TestClient(create_console(project, store, clock=lambda: NOW), follow_redirects=False)
    log_in(client)
    payload = unverified(client.cookies["automator_console"])
    forger = TestClient(client.app, follow_redirects=False)
    forger.cookies.set("automator_console", serializer(project.settings.secret, salt=SALT).dumps(payload))

    assert client.get("/queue").status_code == 200
    assert forger.get("/queue").status_code == 303


SALT = "automator.console.session"


def unverified(cookie: str) -> dict[str, Any]:
    """What a session cookie says, read without its key (signed, not encrypted)."""
    for kind in (URLSafeSerializer, URLSafeTimedSerializer):
        _, payload = kind("not the key", salt=SALT).loads_unsafe(cookie)
        if isinstance(payload, dict):
            return payload
    raise AssertionError(f"cannot read the session cookie {cookie!r}")
