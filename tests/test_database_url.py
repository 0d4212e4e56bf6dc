"""Where a SQLite database named by a relative path is: in the project, as the default
automator.db is, whichever directory the command runs from. A SQLite file whose folder does
not exist is refused, not made: a typo in the path must not start an empty database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from automator.config import load_settings
from automator.daemon_lock import SingleDaemonLock
from automator.errors import ConfigError
from automator.store import Store
from tests.test_daemon import AUTOMATOR


def automator(
    project_dir: Path, env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `automator` command on the project; one still running after a minute fails."""
    return subprocess.run(
        [*AUTOMATOR, "--project", str(project_dir), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("sqlite:///automator.db", "sqlite:///{project}/automator.db"),
        ("sqlite+pysqlite:///data/shop.db?timeout=5", "sqlite+pysqlite:///{project}/data/shop.db?timeout=5"),
        ("sqlite:////var/lib/automator/shop.db", "sqlite:////var/lib/automator/shop.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://lan@127.0.0.1/shop", "postgresql+psycopg://lan@127.0.0.1/shop"),
    ],
)
def test_a_relative_sqlite_path_is_in_the_project(tmp_path: Path, url: str, database: str) -> None:
    settings = load_settings(tmp_path, {"AUTOMATOR_DATABASE_URL": url})

    assert settings.database == database.format(project=tmp_path.resolve())


@pytest.mark.sqlite_only
def test_the_database_url_of_automator_toml_is_read_from_the_project_wherever_one_runs(
    project_dir: Path, process_env: dict[str, str], tmp_path: Path
) -> None:
    settings = project_dir / "automator.toml"
    text = settings.read_text(encoding="utf-8").replace(
        '# database_url = "sqlite:///automator.db"', 'database_url = "sqlite:///shop.db"'
    )
    settings.write_text(text, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {name: value for name, value in process_env.items() if name != "AUTOMATOR_DATABASE_URL"}

    done = automator(project_dir, env, "db", "upgrade", cwd=elsewhere)

    assert done.returncode == 0, done.stderr
    assert (project_dir / "shop.db").exists()
    assert list(elsewhere.iterdir()) == []


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "automatr"

    with pytest.raises(ConfigError, match=f"the database's folder {missing} does not exist; create it"):
        Store(f"sqlite:///{missing}/automator.db")
    assert not missing.exists()


def test_the_daemon_lock_makes_no_folder_for_a_database_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "automatr"

    with pytest.raises(ConfigError, match=f"the database's folder {missing} does not exist"):
        SingleDaemonLock(f"sqlite:///{missing}/automator.db").acquire()
    assert not missing.exists()


@pytest.mark.sqlite_only
def test_run_on_a_mistyped_sqlite_path_refuses_instead_of_starting_an_empty_database(
    project_dir: Path, process_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "automatr"
    env = {**process_env, "AUTOMATOR_DATABASE_URL": f"sqlite:///{missing}/automator.db"}

    done = automator(project_dir, env, "run")

    assert done.returncode == 1
    assert done.stderr == (
        f"error: database_url 'sqlite:///{missing}/automator.db': the database's folder {missing} does not "
        "exist; create it, or correct the path (AUTOMATOR_DATABASE_URL or database_url in automator.toml)\n"
    )
    assert not missing.exists()


@pytest.mark.sqlite_only
def test_the_default_database_is_made_in_the_project_with_no_set_up(
    project_dir: Path, process_env: dict[str, str]
) -> None:
    env = {name: value for name, value in process_env.items() if name != "AUTOMATOR_DATABASE_URL"}

    done = automator(project_dir, env, "tick")

    assert done.returncode == 0, done.stderr
    assert (project_dir / "automator.db").exists()
