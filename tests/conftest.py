"""Shared fixtures: a real project folder, a real SQLite file, factories, the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import freezegun
import pytest
from sqlalchemy import event
from typer.testing import CliRunner

from automator.cli import app
from automator.engine import Engine, TickReport
from automator.importing import ContactRecord, EventRecord, contact_data, event_key
from automator.project import Project, load_project
from automator.staged import EventData
from automator.store import Store, candidates, messages, windows
from automator.store import contacts as contact_store
from automator.store import events as event_store
from automator.store.messages import QueueFilter
from automator.tables import Message, MessageHistory
from automator.testing import RecordingTransport
from tests.postgres import postgres_server  # noqa: F401  (fixture)
from tests.smtp_server import smtp_server  # noqa: F401  (fixture)

# pytest's own clock (durations, --durations) stays real while a test freezes time.
freezegun.configure(extend_ignore_list=["_pytest.timing"])

REPO = Path(__file__).resolve().parent.parent
# Long enough for the commands that refuse a short or shipped secret (`run` over SMTP or with
# --listen, `console`); the tests of that refusal set their own.
TEST_SECRET = "automator-test-secret-0123456789abcdef0123456789abcdef"


def utc(text: str) -> datetime:
    """`utc("2026-11-20 10:00")` → an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A copy of the shipped project (rules, templates, automator.toml) with its own database."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "rules", root / "rules")
    shutil.copytree(REPO / "email_templates", root / "email_templates")
    shutil.copy(REPO / "automator.toml", root / "automator.toml")
    return root


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: about SQLite itself; runs on SQLite alone")


@pytest.fixture(autouse=True, scope="session")
def compiled_templates_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The templates the tests compile are kept in the session's own cache folder, not the
    user's (`automator.templates.CompiledTemplates`); subprocesses inherit it."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that touches the store runs on both stores, unless it is about SQLite."""
    if "database_url" in metafunc.fixturenames and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    """The test's database: a SQLite file in the project, or a PostgreSQL database of its own."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{project_dir / 'automator.db'}"
    return str(request.getfixturevalue("postgres_server").new_database())


@pytest.fixture
def environ(project_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment with the project's database and outbox inside the test folder."""
    values = {
        "AUTOMATOR_DATABASE_URL": database_url,
        "AUTOMATOR_OUTBOX": str(project_dir / "outbox"),
        "AUTOMATOR_SECRET": TEST_SECRET,
    }
    # Every setting of the shell the tests run in goes, not a list of them that the next
    # setting would miss (AUTOMATOR_SCREENSHOTS is the tests' own, not a setting).
    for name in [name for name in os.environ if name.startswith("AUTOMATOR_")]:
        if name != "AUTOMATOR_SCREENSHOTS":
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def process_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment of an `automator` subprocess. Without render workers: a daemon starts
    one per core but one, a second or so of start-up that only tests/test_rendering.py is about."""
    return {**os.environ, **environ, "AUTOMATOR_RENDER_WORKERS": "0"}


@pytest.fixture
def project(project_dir: Path, environ: dict[str, str]) -> Project:
    return load_project(project_dir, environ)


@pytest.fixture
def store(project: Project) -> Iterator[Store]:
    store = project.open_store()
    yield store
    store.dispose()


@pytest.fixture
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with its cheapest settings: the console's own (the library's defaults) take a
    noticeable time per login, and the console tests log in hundreds of times."""
    from argon2 import PasswordHasher

    from automator.console import auth

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def engine(project: Project, store: Store, transport: RecordingTransport) -> Iterator[Engine]:
    engine = Engine(project, store, transport)
    yield engine
    engine.close()


@pytest.fixture
def tick(engine: Engine) -> Callable[[datetime], TickReport]:
    """Run one engine tick at a given time."""

    def run(now: datetime) -> TickReport:
        return asyncio.run(engine.tick(now))

    return run


@pytest.fixture
def make_contact(store: Store, project: Project) -> Callable[..., int]:
    """Create or update a contact; extra keyword arguments become attributes."""

    def make(email: str = "lan@example.com", **fields: Any) -> int:
        now = fields.pop("_now", datetime.now(UTC))
        fields.setdefault("stage", "consideration")
        record = ContactRecord.model_validate({"email": email, **fields})
        data = contact_data(record, project.journey, project.settings.zone)
        with store.session() as session:
            contact_store.upsert(session, [data], now)
            return contact_store.ids_by_email(session, [record.email])[record.email]

    return make


@pytest.fixture
def make_event(store: Store, project: Project) -> Callable[..., str]:
    """Store an event (through the same path as an import); returns its key."""

    def make(
        type: str, at: datetime, email: str = "lan@example.com", id: str | None = None, **properties: Any
    ) -> str:
        record = EventRecord.model_validate(
            {"id": id, "type": type, "email": email, "at": at.isoformat(), "properties": properties}
        )
        key = event_key(record)
        with store.session() as session:
            event_store.add(
                session,
                [EventData(key, record.type, record.email, record.at, record.properties)],
                project.journey,
                at,
            )
        return key

    return make


def cart(cart_id: str = "c1", total: int = 1_250_000, currency: str = "VND") -> dict[str, Any]:
    """Properties of a cart_updated event."""
    return {
        "cart_id": cart_id,
        "total": total,
        "currency": currency,
        "cart_url": f"https://shop.example.com/cart/{cart_id}",
        "items": [{"name": "Áo dài lụa", "quantity": 1, "price": total}],
    }


@pytest.fixture
def cli(project_dir: Path, environ: dict[str, str]) -> Callable[..., Any]:
    """Run the real `automator` CLI in the project folder; returns the click Result."""
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, ["--project", str(project_dir), *args], catch_exceptions=False)

    return run


def write_jsonl(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + "\n",
        encoding="utf-8",
    )
    return path


def all_messages(store: Store) -> list[Message]:
    """Every message in the store, newest first."""
    with store.session() as session:
        return messages.listing(session, QueueFilter(limit=1000))


def statuses(store: Store) -> dict[str, int]:
    """How many messages are in each status."""
    with store.session() as session:
        return messages.counts_by_status(session)


def history_of(store: Store, message_id: int | None) -> list[MessageHistory]:
    assert message_id is not None
    with store.session() as session:
        return messages.history(session, message_id)


def text_of(email: Any) -> str:
    """The text/plain part of a sent email."""
    return email.get_body(("plain",)).get_content()


def write_note_template(project_dir: Path, name: str = "note") -> None:
    """A minimal template (`email_templates/<name>/`) for rules written by a test."""
    folder = project_dir / "email_templates" / name
    folder.mkdir()
    (folder / "subject.txt").write_text("A note", encoding="utf-8")
    (folder / "body.txt").write_text("Hello\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "body.html").write_text("<p>Hello</p><a href='{{ unsubscribe_url }}'>x</a>", encoding="utf-8")


def lookup_plan(store: Store, rule: Any, now: datetime, mark: Any) -> list[str]:
    """The steps of SQLite's plan for a rule's lookup (`EXPLAIN QUERY PLAN`), with the
    bounds of its windows for `now` and `mark`."""

    def explained(connection, cursor, statement, parameters, context, executemany):
        return f"EXPLAIN QUERY PLAN {statement}", parameters

    with store.session() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", explained, retval=True)
        plan = session.execute(candidates._statement(rule), windows.values(rule, now, mark))
        return [row[-1] for row in plan]
