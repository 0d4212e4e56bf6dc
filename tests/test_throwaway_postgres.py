"""The tests' throw-away PostgreSQL ends with the test session, however the session ends: a
run killed from outside leaves no server behind (`tests.postgres.WATCHER`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
GONE_WITHIN = 60.0  # seconds for the watcher to stop the server and remove its folder

SESSION = """
import sys
from tests.postgres import running_server
with running_server() as server:
    print(server.port, server.root, flush=True)
    sys.stdin.read()
"""


def answers(port: int) -> bool:
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def test_a_killed_test_session_leaves_no_postgresql_running():
    session = subprocess.Popen(
        [sys.executable, "-c", SESSION], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert session.stdout is not None
        port, root = session.stdout.readline().split()
        assert answers(int(port))
    finally:
        session.kill()  # as a CI runner's timeout or `kill -9` ends a test run
        session.wait()
    deadline = time.monotonic() + GONE_WITHIN
    while (answers(int(port)) or Path(root).exists()) and time.monotonic() < deadline:
        time.sleep(0.2)  # the watcher's pg_ctl, then its rmtree
    assert not answers(int(port)), "the server outlived its test session"
    assert not Path(root).exists(), "the server's folder outlived its test session"
