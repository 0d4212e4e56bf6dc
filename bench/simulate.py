"""How long does `automator simulate` take for 7 days on a big store?

Builds the store of bench/tick.py (the shipped rules and the bench's own, the same
generator and `--seed`; `--store DIR` reuses one saved by either bench), then times
`simulate` from its `NOW`: the copy of the store, then a tick every hour for `--days`
days on the copy, sending nothing. Checks that the live store was left as it was.

    python bench/simulate.py --contacts 50000 --events 250000
    python bench/simulate.py --contacts 1000000 --events 5000000 --store ~/bench-1m   # the goal's size

Goal (1M contacts / 5M events, SQLite): 7 days in at most 2 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automator.simulate import simulate  # noqa: E402
from bench import tick  # noqa: E402
from bench.tick import NOW, open_project, saved_store, say  # noqa: E402

# A store saved by `python bench/tick.py --store` pickled its generator's classes as
# `__main__`'s: found here under the same names.
for _name in ("Population", "Cart", "Shop"):
    setattr(sys.modules["__main__"], _name, getattr(tick, _name))

GOAL_S = 120.0


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--every", type=int, default=60, help="minutes between ticks")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="automator-bench-simulate-"))
    try:
        db = work / "bench.db"
        project, store = open_project(work, db, work / "outbox")
        saved_store(args, work, project, store, random.Random(args.seed), db)
        store.dispose()
        before = digest(db)
        started, cpu = time.perf_counter(), time.process_time()
        forecast = simulate(project, NOW, args.days, timedelta(minutes=args.every))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        totals = {
            column: sum(day.counts[column] for day in forecast.days) for column in forecast.days[0].counts
        }
        say(f"simulated {args.days} days, a tick every {args.every} min: {wall:.1f} s wall, {cpu:.1f} s CPU")
        say("totals: " + ", ".join(f"{name} {count:,}" for name, count in totals.items()))
        say(f"live store unchanged: {'yes' if digest(db) == before else 'NO'}")
        if (args.contacts, args.events) == (1_000_000, 5_000_000):
            say(f"goal 7 days ≤ {GOAL_S:.0f} s at 1M: {'PASS' if wall <= GOAL_S else 'MISS'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
