"""The process takes memory from at most two glibc malloc arenas once an engine exists,
however many threads allocate (`automator.memory`)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

# Eight threads each hold a block from the C library (a bytes object of 64 kB, below glibc's
# threshold for a block of its own), all at once; then glibc's own report says how many
# arenas the process has.
PROBE = """
import ctypes, sys, tempfile, threading
if sys.argv[1] == "few":
    from automator.memory import use_few_arenas
    use_few_arenas()
held, ready, done = [], threading.Barrier(9), threading.Event()
def hold():
    held.append(bytes(64 * 1024))
    ready.wait(timeout=30)
    done.wait(timeout=30)
threads = [threading.Thread(target=hold) for _ in range(8)]
for thread in threads:
    thread.start()
ready.wait(timeout=30)
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(open(report.name).read().count("<heap nr="))
done.set()
for thread in threads:
    thread.join(timeout=30)
"""


def arenas(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_info"), reason="glibc's malloc only")
def test_threads_share_two_arenas_once_automator_asks_for_few() -> None:
    assert arenas("many") > 2  # what glibc does by itself: an arena per thread, up to a limit
    assert arenas("few") <= 2
