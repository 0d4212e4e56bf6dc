"""Times `automator contacts import` and `automator events import` as a user runs them: the
CLI in a process of its own, on files made by tick.py's generator, into an empty store.

Prints rows/s for each and the command's peak resident memory (with its reading process on
PostgreSQL: the peaks of the processes alive at once, read from /proc as they run, and at
least the largest one's from wait4's rusage), and whether they meet the goals.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import machine
from tick import REPO, Shop, TreeMemory, history_events, write_contacts, write_jsonl

GOAL_SQLITE_ROWS_S = 20_000
GOAL_POSTGRES_ROWS_S = 50_000
GOAL_PEAK_MB = 200.0
NOW = "2026-11-20T05:00:00Z"  # tick.py's NOW: the generated events lie before it


@dataclass(frozen=True)
class Run:
    """One import command: how long it took, what it printed, and its peak memory; and the
    CPU time of the PostgreSQL server meanwhile, when it runs on this machine."""

    seconds: float
    cpu: float
    peak_mb: float
    output: str
    server_cpu: float | None = None


def generate(work: Path, contacts: int, events: int, seed: int) -> tuple[Path, Path]:
    """The contacts CSV and events JSONL, made once per size and seed and kept in `work`."""
    stem = f"{contacts}-{events}-{seed}"
    contacts_csv, events_jsonl = work / f"contacts-{stem}.csv", work / f"events-{stem}.jsonl"
    if not (contacts_csv.exists() and events_jsonl.exists()):
        started = time.perf_counter()
        rng = random.Random(seed)
        people = write_contacts(contacts_csv, contacts, rng)
        write_jsonl(events_jsonl, history_events(Shop(rng, people), events))
        say(f"generated {contacts_csv.name}, {events_jsonl.name} in {time.perf_counter() - started:.1f} s")
    return contacts_csv, events_jsonl


def run_cli(environ: dict[str, str], *args: str) -> Run:
    """`automator ARGS` in the repository's project, not on a terminal (the one-line summary)."""
    command = [sys.executable, "-c", "from automator.cli import app; app(prog_name='automator')"]
    server_before = server_cpu()
    memory = TreeMemory()  # the command, and its reading process on PostgreSQL
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, "--project", str(REPO), *args],
        env={**os.environ, **environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    memory.close()
    # The processes alive at once at their peaks; wait4's figure is the largest one's.
    peak_mb = max(memory.children_mb()[0], usage.ru_maxrss / 1024)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"bench: automator {' '.join(args)} failed:\n{output[-2000:]}")
    server_after = server_cpu()
    server = None if server_before is None or server_after is None else server_after - server_before
    return Run(seconds, usage.ru_utime + usage.ru_stime, peak_mb, output.strip(), server)


def server_cpu() -> float | None:
    """CPU seconds of the PostgreSQL processes on this machine so far, or None when there
    are none to read (a server elsewhere, or SQLite). A backend's time goes to the
    postmaster's children's time when it ends, so the sum is the same before and after."""
    total, found = 0, False
    for entry in Path("/proc").iterdir():
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found = True
        # utime, stime, and the ended children's cutime, cstime (fields 14 to 17).
        total += sum(int(value) for value in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK") if found else None


def say(text: str) -> None:
    print(text, flush=True)


def report(what: str, rows: int, run: Run, goal_rows_s: int) -> bool:
    rate = rows / run.seconds
    met = rate >= goal_rows_s and run.peak_mb <= GOAL_PEAK_MB
    say(
        f"{what}: {rate:,.0f} rows/s ({rows:,} in {run.seconds:.1f} s, CPU {run.cpu:.1f} s), "
        f"peak RSS {run.peak_mb:,.0f} MB [goal >= {goal_rows_s:,} rows/s, <= {GOAL_PEAK_MB:g} MB: "
        f"{'PASS' if met else 'MISS'}]"
    )
    if run.server_cpu is not None:
        per_row = run.server_cpu / rows * 1e6
        say(f"  the server's CPU meanwhile (on this machine): {run.server_cpu:.1f} s, {per_row:.0f} µs a row")
    say(f"  {run.output.splitlines()[-1] if run.output else '(no output)'}")
    return met


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url", help="an empty database to import into (default: a new SQLite file)"
    )
    parser.add_argument("--files", type=Path, help="folder keeping the generated files for the next run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="automator-bench-import-"))
    files = args.files or work
    files.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{work / 'bench.db'}"
    postgres = url.startswith("postgresql")
    say(machine.describe())
    say(f"bench: {args.contacts:,} contacts, {args.events:,} events, seed {args.seed}, {url.split('@')[-1]}")
    try:
        contacts_csv, events_jsonl = generate(files, args.contacts, args.events, args.seed)
        environ = {"AUTOMATOR_DATABASE_URL": url, "AUTOMATOR_OUTBOX": str(work / "outbox")}
        goal_rows_s = GOAL_POSTGRES_ROWS_S if postgres else GOAL_SQLITE_ROWS_S
        contacts = run_cli(environ, "contacts", "import", str(contacts_csv), "--now", NOW)
        events = run_cli(environ, "events", "import", str(events_jsonl), "--now", NOW)
        met = report("contacts import", args.contacts, contacts, goal_rows_s)
        met &= report("events import", args.events, events, goal_rows_s)
        both = (args.contacts + args.events) / (contacts.seconds + events.seconds)
        say(f"both: {both:,.0f} rows/s")
        return 0 if met else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
