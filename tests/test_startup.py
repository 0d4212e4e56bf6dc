"""A marketer runs `automator check` dozens of times an hour: it loads the rules and the
templates, never the database, the web console or the engine (bench/startup.py times it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("sqlalchemy", "sqlmodel", "fastapi", "uvicorn", "aiosmtplib", "babel", "automator.engine")

PROBE = """
import sys
import typer
from automator.cli import app
try:
    typer.main.get_command(app).main(sys.argv[1:], standalone_mode=False)
finally:
    heavy = {heavy}
    found = sorted(name for name in sys.modules if name.split(".")[0] in heavy or name in heavy)
    print("loaded:", " ".join(found))
"""


@pytest.mark.parametrize("args", [["--help"], ["check"], ["rules"]], ids=["help", "check", "rules"])
def test_a_command_that_needs_no_database_does_not_import_one(args: list[str]) -> None:
    probe = PROBE.replace("{heavy}", repr(set(HEAVY)))
    result = subprocess.run(
        [sys.executable, "-c", probe, "--project", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.splitlines()[-1]
    assert loaded.startswith("loaded:") and loaded.removeprefix("loaded:").strip() == "", (
        f"`automator {' '.join(args)}` imported {loaded}"
    )
