"""How the process takes memory from the C library: from two malloc arenas, not one per
thread.

glibc gives each thread that allocates its own arena (up to eight per core), and memory
freed in one arena is reused by that arena only. A tick and a dispatch pass run their work
on several threads (the lookup thread, the dispatcher's claiming, building and recording
threads, the render pool's feeder), each of which allocates bodies, emails and rows of
tens of kilobytes: the process kept the high-water mark of every arena at once, 60 MB more
at the peak of a dispatch at a million contacts than with two arenas, for the same CPU.
Elsewhere than glibc, nothing is changed.

And how often Python's garbage collector looks at the objects a long piece of work makes
(`collecting_young_objects_only`): a tick, an import."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2
YOUNG_GARBAGE = 20_000  # objects a tick or an import makes before the collector looks at them


def use_few_arenas() -> None:
    """At most ARENAS malloc arenas for the threads started from now on (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or not glibc's
        return
    mallopt(M_ARENA_MAX, ARENAS)


@contextmanager
def collecting_young_objects_only() -> Iterator[None]:
    """While a tick or an import runs, Python's garbage collections scan only the objects
    made since it started, and seldom.

    A full collection scans every object the process holds (modules, rules, templates, a web
    console's state), and one may fall in the middle of the work. `gc.freeze` sets the older
    objects aside; at the end they are collected as before. The work's own objects (a
    tick's candidates, drafts and jobs; an import's batch of records) live until their chunk
    or batch is written, and a young collection every 700 new objects would scan them again
    and again: hence YOUNG_GARBAGE new objects between collections.

    When objects are frozen already (a tick running beside this one, or the process's own
    choice), the collector is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], YOUNG_GARBAGE), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
