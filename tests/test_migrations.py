"""Alembic owns the schema: the models and the revisions agree, a database made before
migrations upgrades in place with its data, `automator db upgrade | current | history`
work, a schema that is behind is refused with the command to run, and a new SQLite file
needs no command at all. On both stores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, create_engine, inspect, text
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

from automator.store import Store, schema
from tests.test_daemon import AUTOMATOR

TODAY = "0001"  # the schema of the release before migrations
A_CONTACT = (
    "INSERT INTO contact (email, stage, attributes, created_at, updated_at)"
    " VALUES ('lan@example.com', 'awareness', '{}', '2026-11-20 03:00:00', '2026-11-20 03:00:00')"
)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    """As the suite's, but a PostgreSQL database here starts empty (no schema made)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{project_dir / 'automator.db'}"
    return str(request.getfixturevalue("postgres_server").new_database(empty=True))


@pytest.fixture
def automator(
    project_dir: Path, environ: dict[str, str], database_url: str
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real CLI on `database_url`."""
    env = {**os.environ, **environ, "AUTOMATOR_DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command_line = [*AUTOMATOR, "--project", str(project_dir), *args]
        return subprocess.run(command_line, env=env, capture_output=True, text=True, timeout=120)

    return run


def at_revision(url: str, revision: str, stamped: bool = True) -> None:
    """A database whose schema is at `revision`; without `stamped`, as the release before
    migrations left it (its tables, no alembic_version)."""
    engine = create_engine(url)
    with engine.connect() as connection:
        command.upgrade(schema.config(connection), revision)
        if not stamped:
            connection.execute(text("DROP TABLE alembic_version"))
        connection.commit()
    engine.dispose()


def test_the_models_and_the_migrations_agree(database_url: str) -> None:
    """Indexes on expressions are left to the test below: autogenerate cannot read them back
    from SQLite, nor the collation of one from PostgreSQL."""
    at_revision(database_url, "head")
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _not_on_expressions})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


def _not_on_expressions(item: object, name: str | None, kind: str, reflected: bool, compared: object) -> bool:
    return not (kind == "index" and any(not isinstance(part, Column) for part in item.expressions))  # type: ignore[attr-defined]


def test_a_new_and_an_upgraded_database_have_the_same_indexes(database_url: str, request, tmp_path) -> None:
    """As each database holds them (their SQL), expressions and collations included."""
    if database_url.startswith("sqlite"):
        new = f"sqlite:///{tmp_path / 'new.db'}"
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        new = str(request.getfixturevalue("postgres_server").new_database(empty=True))
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    at_revision(database_url, "head")
    Store(new).create_schema()

    upgraded, made = (_rows(url, query) for url in (database_url, new))

    assert upgraded == made
    assert {"ix_contact_first_name_key", "ix_contact_date_name_month_day"} <= set(upgraded)
    if not database_url.startswith("sqlite"):
        assert upgraded["ix_contact_first_name_key"].endswith('(lower((first_name)::text) COLLATE "C")')


def _rows(url: str, query: str) -> dict[str, str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = {name: sql for name, sql in connection.execute(text(query))}
    engine.dispose()
    return rows


def test_a_database_made_before_migrations_upgrades_in_place_with_its_data(database_url, automator) -> None:
    at_revision(database_url, TODAY, stamped=False)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contact (email, first_name, attributes, created_at, updated_at)"
                " VALUES ('lan@example.com', 'Lan', '{}', '2026-11-20 03:00:00', '2026-11-20 03:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO console_user (name, password_hash, role, created_at)"
                " VALUES ('ada', 'x', 'admin', '2026-11-20 03:00:00')"
            )
        )

    refused = automator("contacts", "show", "lan@example.com")
    upgraded = automator("db", "upgrade")
    shown = automator("contacts", "show", "lan@example.com")

    assert refused.returncode == 1 and "run `automator db upgrade`" in refused.stderr
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"upgraded the schema from revision {TODAY} to {schema.head()}"
    assert shown.returncode == 0 and "Lan" in shown.stdout
    with engine.connect() as connection:
        assert "claimed_by" in {column["name"] for column in inspect(connection).get_columns("message")}
        assert connection.execute(text("SELECT session_version FROM console_user")).scalar() == 0
    engine.dispose()


@pytest.mark.parametrize("args", [["tick"], ["run"]], ids=["tick", "run"])
def test_a_schema_that_is_behind_is_refused_with_the_command_to_run(database_url, automator, args) -> None:
    at_revision(database_url, TODAY)

    result = automator(*args)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the database's schema is at revision {TODAY}, this automator needs {schema.head()}: "
        "run `automator db upgrade` (back the database up first)"
    )


def test_a_new_database_is_made_at_the_newest_revision_without_a_command(database_url, automator) -> None:
    imported = automator("suppressions", "add", "lan@example.com", "--reason", "blocked")
    current = automator("db", "current")

    assert imported.returncode == 0, imported.stderr
    assert (current.returncode, current.stdout.strip()) == (0, f"{schema.head()} (the newest)")


def test_db_current_fails_when_an_upgrade_is_waiting_and_says_what_to_run(database_url, automator) -> None:
    at_revision(database_url, TODAY)

    current = automator("db", "current")

    assert current.returncode == 1  # a deploy script stops here
    assert current.stdout.strip() == f"{TODAY} (behind {schema.head()}: run `automator db upgrade`)"


def test_db_history_lists_the_revisions_and_marks_the_databases(database_url, automator) -> None:
    at_revision(database_url, TODAY)

    history = automator("db", "history").stdout.splitlines()

    assert history[0].startswith(f"{schema.head()}  ")  # the newest first
    assert history[-2:] == [
        "0002  A claim's owner on each message, a session version per console user, failed logins.",
        "0001  The schema as automator made it before migrations: every table, column and index.  (current)",
    ]
    assert [line for line in history if line.endswith("(current)")] == [history[-1]]
    assert all(line.removesuffix("  (current)").endswith(".") for line in history)  # whole sentences


def test_db_history_lists_the_revisions_without_a_database_it_can_reach(project_dir, environ) -> None:
    from tests.smtp_server import free_port

    url = f"postgresql+psycopg://lan:Hunter2secret@127.0.0.1:{free_port()}/shop"
    env = {**os.environ, **environ, "AUTOMATOR_DATABASE_URL": url}
    result = subprocess.run(
        [*AUTOMATOR, "--project", str(project_dir), "db", "history"], env=env, capture_output=True, text=True
    )

    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith(f"{schema.head()}  ")
    assert "(current)" not in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: no revision marked (current): cannot connect to ")
    assert "Hunter2" not in line


def test_a_schema_newer_than_this_automator_is_refused_not_called_behind(database_url, automator) -> None:
    at_revision(database_url, "head")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()

    refused = automator("tick")
    upgrade = automator("db", "upgrade")
    current = automator("db", "current")

    assert current.returncode == 1
    newer = (
        f"error: the database's schema is at revision 0099, newer than this automator's ({schema.head()}): "
        "a newer release made it; run that release"
    )
    assert (refused.returncode, refused.stderr.strip()) == (1, newer)
    assert (upgrade.returncode, upgrade.stderr.strip()) == (1, newer)
    assert (
        current.stdout.strip()
        == f"0099 (newer than this automator's {schema.head()}: run the release that made it)"
    )


def test_a_database_holding_another_applications_tables_is_not_taken_for_an_old_schema(
    database_url, automator
) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE contact (id integer PRIMARY KEY, foo text)"))
        connection.execute(text("CREATE TABLE orders (id integer)"))
    engine.dispose()

    for args in (["tick"], ["db", "upgrade"], ["db", "current"]):
        result = automator(*args)

        assert result.returncode == 1, args
        assert result.stderr.strip() == (
            "error: the database holds tables named as automator's (contact) but not its schema: "
            "give automator a database of its own"
        )


def test_a_database_that_cannot_be_reached_is_one_line_without_the_password(
    project_dir, environ, tmp_path
) -> None:
    from tests.smtp_server import free_port

    unreachable = {
        f"postgresql+psycopg://lan:Hunter2secret@127.0.0.1:{free_port()}/shop": "Connection refused",
        f"postgresql+psycopg://lan:Hunter2@secret@127.0.0.1:{free_port()}/shop": (
            "the URL's password holds an @ that is not written as %40"
        ),
        f"sqlite:///{tmp_path}": "unable to open database file",  # a folder, not a file
        f"sqlite:///{tmp_path}/no/such/folder/automator.db": "folder",  # refused before connecting
    }
    for url, reason in unreachable.items():
        env = {**os.environ, **environ, "AUTOMATOR_DATABASE_URL": url}
        for args in (["status"], ["db", "current"], ["db", "upgrade"]):
            result = subprocess.run(
                [*AUTOMATOR, "--project", str(project_dir), *args], env=env, capture_output=True, text=True
            )

            assert result.returncode == 1, (url, args)
            [line] = result.stderr.splitlines()
            if reason == "folder":
                assert line.endswith(
                    f"folder {tmp_path}/no/such/folder does not exist; create it, or correct the path "
                    "(AUTOMATOR_DATABASE_URL or database_url in automator.toml)"
                ), line
            else:
                assert line.startswith("error: cannot connect to ")
                assert reason in line
            assert "Hunter2" not in line and "secret@" not in line


def test_opening_an_up_to_date_store_takes_no_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'automator.db'}"
    Store(url).create_schema()
    holder = Store(url)
    with holder.transaction():  # a tick holds the write lock
        Store(url).create_schema()  # returns at once instead of waiting for it
    holder.dispose()


def test_the_newest_revision_known_without_alembic_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(schema.config()).get_current_head() == schema.HEAD


def test_a_command_on_an_up_to_date_database_does_not_import_alembic(database_url, project_dir) -> None:
    Store(database_url).create_schema()
    probe = (
        "import sys\n"
        "from automator.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "finally:\n"
        "    heavy = sorted(n for n in sys.modules if n.split('.')[0] in ('alembic', 'mako'))\n"
        "    print('loaded:', ' '.join(heavy))\n"
    )
    env = {**os.environ, "AUTOMATOR_DATABASE_URL": database_url, "AUTOMATOR_RENDER_WORKERS": "0"}
    arguments = ["--project", str(project_dir), "tick", "--now", "2026-11-20T05:00:00Z"]

    result = subprocess.run(
        [sys.executable, "-c", probe, *arguments], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded: "


@pytest.mark.parametrize("made", ["new", "upgraded"])
def test_the_contact_change_log_is_kept_by_triggers_in_a_new_and_an_upgraded_database(
    database_url, made
) -> None:
    if made == "new":
        Store(database_url).create_schema()
    else:
        at_revision(database_url, "0003")
        Store(database_url).upgrade_schema()
    engine = create_engine(database_url)
    for statement in (
        A_CONTACT,
        'UPDATE contact SET attributes = \'{"vip": "yes"}\'',
        "UPDATE contact SET stage = 'consideration'",
        "UPDATE contact SET updated_at = '2026-11-20 04:00:00'",  # no rule reads it
        "INSERT INTO contact_tag (contact_id, tag, added_at) SELECT id, 'vip', updated_at FROM contact",
    ):
        with engine.begin() as connection:  # one transaction each: it logs a contact once
            connection.execute(text(statement))
    with engine.connect() as connection:
        logged = connection.execute(text("SELECT count(*) FROM contact_change")).scalar()
    engine.dispose()

    assert logged == 3


@pytest.mark.parametrize("made", ["new", "upgraded"])
def test_message_bodies_are_compressed_by_lz4_and_kept_in_line_on_postgresql(postgres_server, made) -> None:
    engine = create_engine(made_on_postgresql(postgres_server, made, "0008"))
    with engine.connect() as connection:
        methods = connection.execute(
            text(
                "SELECT attname, attcompression, attstorage FROM pg_attribute"
                " WHERE attrelid = 'message_content'::regclass AND attname LIKE '%_body'"
            )
        ).all()
    engine.dispose()

    assert sorted(methods) == [("html_body", "l", "m"), ("text_body", "l", "m")]


def made_on_postgresql(postgres_server, made: str, revision: str, *statements: str) -> str:
    """A PostgreSQL database's URL: its schema made new, or (`made` "upgraded") made at
    `revision`, given the rows of `statements`, and upgraded."""
    url = str(postgres_server.new_database(empty=True))
    if made == "new":
        Store(url).create_schema()
        return url
    at_revision(url, revision)
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()
    Store(url).upgrade_schema()
    return url


def test_the_change_logs_trigger_plans_its_statements_at_each_call(postgres_server) -> None:
    """PL/pgSQL keeps the plan of a static statement for the connection: made for the empty
    transition tables of a first UPDATE of no rows, it joined a later big one's rows by a
    nested loop (26 s for 20,000 contacts)."""
    engine = create_engine(made_on_postgresql(postgres_server, "upgraded", "0010"))
    with engine.connect() as connection:
        body = connection.execute(
            text("SELECT prosrc FROM pg_proc WHERE proname = 'contact_change_log'")
        ).scalar()
    engine.dispose()

    assert body.count("EXECUTE $statement$") == 3


@pytest.mark.parametrize("made", ["new", "upgraded"])
def test_key_text_is_in_the_c_collation_on_postgresql(postgres_server, made) -> None:
    """The collation is no part of what autogenerate compares: asked of the database here."""
    engine = create_engine(made_on_postgresql(postgres_server, made, "0012", A_CONTACT))
    with engine.connect() as connection:
        collated = connection.execute(
            text(
                "SELECT table_name || '.' || column_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND collation_name IS NOT NULL"
            )
        ).all()
        found = connection.execute(text("SELECT stage FROM contact WHERE email = 'lan@example.com'")).all()
        # A change of a column's type drops its statistics: the upgrade gathers them again.
        counted = connection.execute(
            text("SELECT count(*) FROM pg_stats WHERE tablename = 'contact' AND attname = 'email'")
        ).scalar()
    engine.dispose()

    dialect = postgresql.dialect()
    declared = {
        f"{table.name}.{column.name}"
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if 'COLLATE "C"' in column.type.compile(dialect=dialect)
    }
    assert {"message.rule_id", "event.key", "contact.email"} <= declared
    assert dict(collated) == dict.fromkeys(declared, "C")
    assert (found, counted) == (([], 0) if made == "new" else ([("awareness",)], 1))
