"""The database's schema, owned by Alembic (revisions in `automator/migrations/versions`).

A new, empty database is made at once at the newest revision (the demo's SQLite file needs
no command). A database at an older revision is brought up to date only by `automator db
upgrade`: every other command refuses to run on it and says so, since code and schema that
disagree could lose or duplicate mail. A database made before migrations (its tables, no
`alembic_version`) counts as the baseline revision.

Two processes opening a new database at once take turns (SQLite's write lock, or an
advisory lock on PostgreSQL), so that the second finds the tables made instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlmodel import SQLModel

from automator import tables  # noqa: F401  (registers the tables)
from automator.errors import ConfigError
from automator.store import changes, locks, postgres

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
BASELINE = "0001"  # the schema automator made before migrations
OWN_TABLES = frozenset({"contact", "event", "message"})  # in every revision, the baseline's too
# The newest revision, known without Alembic (whose import costs every command that opens a
# database a tenth of a second): tests/test_migrations.py checks it is Alembic's head.
HEAD = "0015"


class SchemaBehind(ConfigError):
    """The database's schema is older than this automator: `automator db upgrade` first."""


@dataclass(frozen=True)
class Revision:
    """Where a database's schema is, and where this automator's is."""

    current: str | None  # None: no table at all (a new database)
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def ahead(self) -> bool:
        """Made by a newer automator (revisions are numbered in order)."""
        return self.current is not None and self.current.isdigit() and int(self.current) > int(self.head)


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: the revisions ship inside the package."""
    from alembic.config import Config

    settings = Config()
    settings.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        settings.attributes["connection"] = connection
    return settings


def head() -> str:
    return HEAD


def revision_of(connection: Connection) -> Revision:
    """The database's revision: Alembic's mark, the baseline for tables made before
    migrations, or None for an empty database. Read as Alembic keeps it, without Alembic."""
    current = _stamped(connection)
    if current is None:
        names = set(inspect(connection).get_table_names())
        if names >= OWN_TABLES:
            current = BASELINE
        elif clash := sorted(names & set(SQLModel.metadata.tables)):
            raise ConfigError(
                f"the database holds tables named as automator's ({', '.join(clash)}) but not its "
                "schema: give automator a database of its own"
            )
    return Revision(current, HEAD)


def _stamped(connection: Connection) -> str | None:
    """The revision in Alembic's `alembic_version` table, if there is one."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def prepare(engine: Engine) -> None:
    """Make a new database's schema at the newest revision; refuse one that is behind."""
    with engine.connect() as connection:
        revision = revision_of(connection)
    if revision.up_to_date:
        return
    if revision.current is not None:
        raise behind(revision)
    with _exclusive(engine) as connection:
        revision = revision_of(connection)  # looked at again: another process may have made it
        if revision.current is None:
            _make(connection)
        elif not revision.up_to_date:
            raise behind(revision)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision (`automator db upgrade`); returns the
    revisions before and after."""
    from alembic import command

    with _exclusive(engine) as connection:
        revision = revision_of(connection)
        if revision.ahead:
            raise behind(revision)
        if revision.current is None:
            _make(connection)
        else:
            if _stamped(connection) is None:
                command.stamp(config(connection), BASELINE)  # made before migrations
            command.upgrade(config(connection), "head")
    return revision.current, revision.head


def _make(connection: Connection) -> None:
    """An empty database's schema, made from the models at once (with what the models do not
    describe: the triggers that keep the contact change log and, on PostgreSQL, the bodies'
    compression and storage and the sequence fence) and marked as the newest
    revision (running every revision from the baseline would make the same tables)."""
    from alembic import command

    SQLModel.metadata.create_all(connection)
    changes.create_triggers(connection)
    postgres.compress_bodies_with_lz4(connection)
    postgres.keep_bodies_in_line(connection)
    postgres.create_fences(connection)
    command.stamp(config(connection), "head")


def history() -> list[tuple[str, str]]:
    """Every revision, the newest first, with the first sentence of what it says it changes."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(config())
    return [(script.revision, _first_sentence(script.doc or "")) for script in scripts.walk_revisions()]


def _first_sentence(text: str) -> str:
    """The first sentence of a docstring's first paragraph, its lines joined."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    ended = re.search(r"\.(\s|$)", paragraph)
    return paragraph[: ended.start() + 1] if ended else paragraph


def behind(revision: Revision) -> ConfigError:
    """Why this automator does not run on the database's schema, and what to do."""
    if revision.ahead:
        return ConfigError(
            f"the database's schema is at revision {revision.current}, newer than this automator's "
            f"({revision.head}): a newer release made it; run that release"
        )
    return SchemaBehind(
        f"the database's schema is at revision {revision.current}, this automator needs {revision.head}: "
        "run `automator db upgrade` (back the database up first)"
    )


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other process changes the schema beside."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, until the commit
        elif engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": locks.SCHEMA})
        yield connection
        connection.commit()
