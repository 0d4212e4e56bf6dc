"""`make demo` end to end, on SQLite as it ships and on PostgreSQL through `--database-url`:
four weeks of example data, ticked hour by hour, give the same totals on both stores."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOTALS = re.compile(r"^\s+all rules\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.MULTILINE)


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """The demo's script, example data, rules and templates, in a folder of their own: the
    demo writes its database and outbox beside its script's parent."""
    for name in ("examples", "rules", "email_templates"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "automator.toml", tmp_path / "automator.toml")
    return tmp_path


def run_demo(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTOMATOR_")}
    return subprocess.run(
        [sys.executable, str(folder / "examples" / "demo.py"), *args],
        cwd=folder,
        env={**env, "AUTOMATOR_RENDER_WORKERS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_demo_sends_the_same_emails_on_both_stores(demo_copy: Path, database_url: str) -> None:
    args = () if database_url.startswith("sqlite") else ("--database-url", database_url)
    result = run_demo(demo_copy, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    totals = TOTALS.search(result.stdout)
    assert totals, result.stdout[-2000:]
    assert totals.groups() == ("45", "42", "3", "1", "1")  # queued, sent, cancelled, held, suppressed
    assert "42 emails (.eml files) in outbox/" in result.stdout
    assert len(list((demo_copy / "outbox").glob("*.eml"))) == 42


def test_the_demo_refuses_a_database_in_use(demo_copy: Path, database_url: str) -> None:
    imported = subprocess.run(
        [Path(sys.executable).parent / "automator", "contacts", "import", "examples/contacts.csv"],
        cwd=demo_copy,
        env={**os.environ, "AUTOMATOR_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    result = run_demo(demo_copy, "--database-url", database_url)
    assert result.returncode == 1
    assert "already holds contact rows; the demo needs an empty database" in result.stderr
    assert not (demo_copy / "outbox").exists()
