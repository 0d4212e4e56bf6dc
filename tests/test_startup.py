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


def automator(launcher: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `automator --project REPO ARGS` by the Python code `launcher`."""
    return subprocess.run(
        [sys.executable, "-c", launcher, "--project", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def loaded(args: list[str], heavy: tuple[str, ...]) -> tuple[str, list[str]]:
    """What `automator ARGS` printed, and which of the `heavy` modules it imported."""
    result = automator(PROBE.replace("{heavy}", repr(set(heavy))), args)
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


@pytest.mark.parametrize(
    ("argv", "built"),
    [
        (["check"], ["check"]),
        (["--project", "shop", "check", "--store"], ["check"]),
        (["-p", "shop", "queue", "list"], ["queue"]),
        (["--project=shop", "rules", "off", "x"], ["rules"]),
        (["-pshop", "tick"], ["tick"]),
        (["--project", "check", "tick"], ["tick"]),
        (["--help"], None),
        (["chek"], None),
        ([], None),
    ],
)
def test_run_as_a_program_the_app_builds_only_its_command(argv: list[str], built: list[str] | None) -> None:
    from automator.cli import _named, app

    lean = _named(app, argv)  # type: ignore[arg-type]

    names = [info.name for info in (*lean.registered_commands, *lean.registered_groups)]
    assert names == (built or [info.name for info in (*app.registered_commands, *app.registered_groups)])
    assert len(app.registered_commands) + len(app.registered_groups) > 15  # the whole app is left whole


WHOLE = (
    "import sys, typer; from automator.cli import app; "
    "typer.main.get_command(app).main(sys.argv[1:], prog_name='automator')"
)
LEAN = "import sys; from automator.cli import app; sys.argv[0] = 'automator'; app()"


@pytest.mark.parametrize(
    "args",
    [["check", "--help"], ["queue", "list", "--help"], ["check", "--bogus"], ["chek"], ["rules"], ["--help"]],
)
def test_the_command_built_alone_answers_as_in_the_whole_app(args: list[str]) -> None:
    def answer(launcher: str) -> tuple[int, str, str]:
        result = automator(launcher, args)
        return result.returncode, result.stdout, result.stderr

    whole = answer(WHOLE)
    assert answer(LEAN) == whole
    assert whole[1] or whole[2]
