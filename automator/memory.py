"""How the process takes memory from the C library: from two malloc arenas, not one per
thread.

glibc gives each thread that allocates its own arena (up to eight per core), and memory
freed in one arena is reused by that arena only. A tick and a dispatch pass run their work
on several threads (the lookup thread, the dispatcher's claiming, building and recording
threads, the render pool's feeder), each of which allocates bodies, emails and rows of
tens of kilobytes: the process kept the high-water mark of every arena at once, 60 MB more
at the peak of a dispatch at a million contacts than with two arenas, for the same CPU.
Elsewhere than glibc, nothing is changed."""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2


def use_few_arenas() -> None:
    """At most ARENAS malloc arenas for the threads started from now on (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or not glibc's
        return
    mallopt(M_ARENA_MAX, ARENAS)
