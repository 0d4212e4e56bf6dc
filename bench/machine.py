"""What the machine a bench runs on can do, printed before its figures: the benches' times
depend on it as much as on automator, and two machines of the same size may differ by half.

A fixed loop of Python is timed in a process of its own, then in two at once: the first
time says how fast one core runs the interpreter, the second how much of a second core
there is (two cores that share their caches or their host run two processes at less than
twice one's pace). A figure from another machine compares through these.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

# About 0.2 s on a 3 GHz core: long enough to time, short beside any bench.
LOOP = (
    "import time; t = time.perf_counter(); sum(i * i for i in range(3_000_000)); "
    "print(time.perf_counter() - t)"
)
ROUNDS = 3  # the loop alone: the quickest of these; two at once: the middle one


def _loops(count: int) -> list[float]:
    """The loop's time in each of `count` processes run at once."""
    command = [sys.executable, "-c", LOOP]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    return [float(process.communicate()[0]) for process in running]


def describe() -> str:
    """The machine's load, its cores, and the loop's times alone and two at once (a shared
    machine's pace changes from one second to the next: the best alone, the middle pair)."""
    load = os.getloadavg()[0]
    alone = min(time for _ in range(ROUNDS) for time in _loops(1))
    together = statistics.median(statistics.mean(_loops(2)) for _ in range(ROUNDS))
    return (
        f"load average {load:.1f} on {os.cpu_count()} CPUs before the run; a loop of Python took "
        f"{alone:.2f} s alone and {together:.2f} s two at once "
        f"(two cores do {2 * alone / together:.1f}x one's work)"
    )
