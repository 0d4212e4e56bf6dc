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
    typer.main.get_command(app).main(sys.argv[1:], prog_name="automator", standalone_mode=False)
finally:
    heavy = {heavy}
    found = sorted(name for name in sys.modules if name.split(".")[0] in heavy or name in heavy)
    print("loaded:", " ".join(found))
"""


def loaded(args: list[str], heavy: tuple[str, ...]) -> tuple[str, list[str]]:
    """What `automator ARGS` printed, and which of the `heavy` modules it imported."""
    probe = PROBE.replace("{heavy}", repr(set(heavy)))
    result = subprocess.run(
        [sys.executable, "-c", probe, "--project", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    *printed, last = result.stdout.splitlines()
    assert last.startswith("loaded:"), result.stdout
    return "\n".join(printed), last.removeprefix("loaded:").split()


@pytest.mark.parametrize("args", [["--help"], ["check"], ["rules"]], ids=["help", "check", "rules"])
def test_a_command_that_needs_no_database_does_not_import_one(args: list[str]) -> None:
    _, found = loaded(args, HEAVY)
    assert found == [], f"`automator {' '.join(args)}` imported {found}"


@pytest.mark.parametrize("args", [["--help"], ["queue", "--help"], ["queue", "list", "--help"]])
def test_help_is_plain_text_printed_without_rich(args: list[str]) -> None:
    printed, found = loaded(args, ("rich", "markdown_it", "pygments"))
    assert found == [], f"`automator {' '.join(args)}` imported {found}"
    assert printed.startswith("Usage: automator")
    assert "Options:" in printed and "╭" not in printed
