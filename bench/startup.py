"""How long does the `automator` command take to start? A marketer runs `automator check` after
every edit of a rule file, so its start-up is part of the edit loop.

Runs `automator --help`, `automator check` and `automator rules` in the repository root (the
shipped project) as a user would, each in a fresh process, and prints for each the median wall
time of `--runs` runs (PASS or MISS against the goal; the process's CPU time beside it, the
better guide on a busy machine), the floor under it (the libraries the command cannot do without,
imported alone: see FLOORS) and the imports that cost the most, from `python -X importtime`:

    python bench/startup.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = (["--help"], ["check"], ["rules"])
# What each command cannot start without: the command line's library, and for `check` and
# `rules` the rule language's (YAML files validated by pydantic models) and, for `check`, the
# templates' (Jinja2). Imported alone in a bare Python, they are a floor under the command's
# start-up that no change to automator itself can go below.
FLOORS = {
    "--help": "import typer",
    "check": "import typer, yaml, jinja2; from pydantic import BaseModel",
    "rules": "import typer, yaml; from pydantic import BaseModel",
}
GOAL_S = 0.3
# The console script as pip writes it, for a machine where it is not installed.
LAUNCHER = "import sys; from automator.cli import app; sys.argv[0] = 'automator'; sys.exit(app())"


@dataclass(frozen=True)
class Import:
    """One line of `-X importtime`: a module and what importing it cost, in seconds."""

    module: str
    own_s: float
    cumulative_s: float


def automator(arguments: list[str], *python_options: str) -> list[str]:
    """The command line that runs `automator ARGUMENTS` with this Python."""
    script = Path(sys.executable).with_name("automator")
    launcher = [str(script)] if script.exists() else ["-c", LAUNCHER]
    return [sys.executable, *python_options, *launcher, *arguments]


@dataclass(frozen=True)
class Run:
    """One run of a command, in seconds: from start to exit, and the CPU time it used."""

    wall_s: float
    cpu_s: float


def timed(command: list[str]) -> Run:
    """Run `command` once in the repository root, timed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(wall, cpu)


def run(arguments: list[str]) -> Run:
    """Run `automator ARGUMENTS` once, timed."""
    return timed(automator(arguments))


def floor(arguments: list[str]) -> Run:
    """One run of a bare Python importing what `automator ARGUMENTS` cannot do without."""
    return timed([sys.executable, "-c", FLOORS[arguments[0]]])


def imports(arguments: list[str]) -> list[Import]:
    """Every module `automator ARGUMENTS` imports, with its cost."""
    run = subprocess.run(
        automator(arguments, "-X", "importtime"),
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return [parsed for line in run.stderr.splitlines() if (parsed := parse_importtime(line))]


def parse_importtime(line: str) -> Import | None:
    """`import time:       412 |       9876 |   automator.rules` → Import, or None for the header."""
    if not line.startswith("import time:"):
        return None
    own, cumulative, module = line.removeprefix("import time:").split("|")
    if not own.strip().isdigit():
        return None
    return Import(module.strip(), int(own) / 1e6, int(cumulative) / 1e6)


def report(arguments: list[str], count: int, top: int) -> bool:
    """Print one command's figures; True when its median meets the goal."""
    run(arguments)  # once unmeasured: every measured run finds .pyc files and compiled templates
    runs = [run(arguments) for _ in range(count)]
    median = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    verdict = "PASS" if median <= GOAL_S else "MISS"
    shown = " ".join(f"{r.wall_s:.3f}" for r in runs)
    print(f"automator {' '.join(arguments)}: median {median:.3f} s of {count} runs ({shown})")
    print(f"  goal ≤ {GOAL_S} s: {verdict}  (CPU time, median: {cpu:.3f} s)")
    floors = [floor(arguments) for _ in range(count)]
    least, least_cpu = statistics.median(f.wall_s for f in floors), statistics.median(f.cpu_s for f in floors)
    print(f"  floor: `{FLOORS[arguments[0]]}` alone, median {least:.3f} s (CPU {least_cpu:.3f} s)")
    print(f"  top {top} imports by cumulative time (-X importtime):")
    heaviest = sorted(imports(arguments), key=lambda i: i.cumulative_s, reverse=True)[:top]
    for entry in heaviest:
        print(f"    {entry.cumulative_s * 1000:8.1f} ms  (own {entry.own_s * 1000:6.1f} ms)  {entry.module}")
    return median <= GOAL_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per command (the median is the figure)")
    parser.add_argument("--top", type=int, default=10, help="how many imports to list")
    options = parser.parse_args()
    results = [report(arguments, options.runs, options.top) for arguments in COMMANDS]
    print("all PASS" if all(results) else "some MISS")


if __name__ == "__main__":
    main()
