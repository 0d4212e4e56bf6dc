"""How long does `automator tick` take end to end, as a user runs it on a big store? The CLI
in a process of its own (start-up, the rules and templates loaded, the render workers
started, the rules evaluated, the queue dispatched into the file outbox, the summary
printed), on a fresh copy of the store tick.py imports, before any tick ran on it.

    python bench/cli_tick.py --store ~/bench-200k                  # 200k contacts, 1M events
    python bench/cli_tick.py --store ~/bench-1m --contacts 1000000 --events 5000000

Prints each run's wall and CPU time (the render workers' included), peak memory, the
messages queued, sent and left waiting, and the median wall time against the goal (≤ 6 s at
200k contacts / 1M events, SQLite, quiet hours and the frequency cap as shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import machine
from tick import NOW, say, write_project

GOAL_S = 6.0  # at 200k contacts / 1M events (issue 17)
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Run:
    """One `automator tick`: its times, its peak memory and what it reported."""

    seconds: float
    cpu: float
    peak_mb: float
    queued: int
    sent: int
    waiting: int
    files: int  # in the outbox afterwards

    def line(self) -> str:
        return (
            f"{self.seconds:.2f} s (CPU {self.cpu:.2f} s), peak RSS {self.peak_mb:,.0f} MB: "
            f"{self.queued:,} queued, {self.sent:,} sent, {self.waiting:,} waiting"
        )


def build_store(args: argparse.Namespace) -> None:
    """Have tick.py import the store into --store (it saves it before its own ticks)."""
    say(f"no store in {args.store}: tick.py builds one (minutes)")
    command = [sys.executable, str(HERE / "tick.py"), "--store", str(args.store), "--no-dispatch"]
    sizes = ["--contacts", str(args.contacts), "--events", str(args.events), "--seed", str(args.seed)]
    subprocess.run([*command, *sizes, "--incremental-runs", "1", "--sample", "200"], check=True)


def describe(saved: Path) -> str:
    # immutable: read without making the -wal and -shm files a WAL database gets when opened
    with sqlite3.connect(f"file:{saved}?mode=ro&immutable=1", uri=True) as db:
        contacts = db.execute("SELECT count(*) FROM contact").fetchone()[0]
        events = db.execute("SELECT count(*) FROM event").fetchone()[0]
        messages = db.execute("SELECT count(*) FROM message").fetchone()[0]
    if messages:
        raise SystemExit(f"bench: {saved} holds {messages:,} messages: a tick ran on it")
    return f"{contacts:,} contacts, {events:,} events, SQLite {sqlite3.sqlite_version}, {saved}"


def tick(saved: Path, project: Path, work: Path, outbox: Path) -> Run:
    """`automator tick --now NOW` on a fresh copy of the saved store."""
    db = work / "tick.db"
    for stale in work.glob("tick.db*"):
        stale.unlink()
    shutil.copyfile(saved, db)
    with db.open("rb+") as copied:  # on disk before the clock starts, as a user's store is
        os.fsync(copied.fileno())
    shutil.rmtree(outbox, ignore_errors=True)
    environ = {**os.environ, "AUTOMATOR_DATABASE_URL": f"sqlite:///{db}", "AUTOMATOR_OUTBOX": str(outbox)}
    command = [str(Path(sys.executable).parent / "automator"), "--project", str(project)]
    errors = work / "stderr.txt"
    started = time.perf_counter()
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            [*command, "tick", "--now", NOW.isoformat(), "--json"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert child.stdout is not None
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # its rusage counts the render workers it waited for
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"bench: automator tick failed:\n{errors.read_text()[-2000:]}")
    rules = json.loads(output)["rules"]
    return Run(
        seconds,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        sum(rule["enqueued"] for rule in rules),
        sum(rule["sent"] for rule in rules),
        sum(rule["waiting"] for rule in rules),
        sum(1 for _ in outbox.glob("*.eml")) if outbox.exists() else 0,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--store",
        type=Path,
        required=True,
        help="tick.py's --store folder (bench.db); built there first if it holds none",
    )
    parser.add_argument("--contacts", type=int, default=200_000, help="when the store is built")
    parser.add_argument("--events", type=int, default=1_000_000, help="when the store is built")
    parser.add_argument("--seed", type=int, default=7, help="when the store is built")
    parser.add_argument(
        "--runs", type=int, default=3, help="ticks, each on a fresh copy; the median is judged"
    )
    parser.add_argument("--outbox", type=Path, help="folder for the outbox (default: beside the copy)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    saved = args.store / "bench.db"
    if not saved.exists():
        build_store(args)
    work = Path(tempfile.mkdtemp(prefix="automator-bench-cli-tick-"))
    outbox = (args.outbox or work) / f"outbox-{os.getpid()}"
    say(machine.describe())
    say(f"bench: automator tick --now {NOW.isoformat()} on {describe(saved)}; outbox {outbox}")
    try:
        project = write_project(work)
        runs = []
        for number in range(1, args.runs + 1):
            run = tick(saved, project, work, outbox)
            if run.files != run.sent:
                raise SystemExit(f"bench: {run.sent:,} sent but {run.files:,} files in the outbox")
            say(f"run {number}: {run.line()}")
            runs.append(run)
        wall = statistics.median(run.seconds for run in runs)
        cpu = statistics.median(run.cpu for run in runs)
        met = wall <= GOAL_S
        say(
            f"automator tick end to end: {wall:.2f} s (CPU {cpu:.2f} s), the median of {len(runs)} "
            f"[goal <= {GOAL_S:g} s: {'PASS' if met else 'MISS'}]"
        )
        return 0 if met else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(outbox, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
