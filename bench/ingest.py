"""How many events a second does the HTTP API take in, as a shop's backend sends them?

A real daemon (`automator run --listen`, a subprocess on a SQLite file, or PostgreSQL with
--database-url) takes `POST /v1/events` batches of 100 from 8 concurrent clients (threads,
each with its own keep-alive connection). The events are cart updates of a few thousand
shoppers, two days old: stored and journey-moved like any, but past the abandoned-cart rule's
lateness, so the daemon's ticks find nothing to send while the bench runs.

Before it reports a speed it checks that every event was accepted once and is in the store,
then replays a sample and expects every one back as a duplicate (a fast wrong answer is
caught). It prints events/s, each request's latency (p50, p99), and the CPU time of the
daemon and of the clients: other work sharing the machine's cores slows the wall clock, not
the CPU time per event, which is then the steadier figure (the load average is printed too).

    python bench/ingest.py                      # 100k events, batches of 100, 8 clients
    python bench/ingest.py --events 20000 --clients 4
    python bench/ingest.py --database-url postgresql+psycopg://…/bench   # an empty database

Goal: at least 5,000 events/s on SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles

import httpx2 as httpx
from sqlalchemy import func, select

from automator.store import Store, table
from automator.tables import Event

REPO = Path(__file__).resolve().parent.parent
GOAL = 5_000  # events/s on SQLite
SECRET = "bench-ingest-secret-0123456789abcdef0123456789abcdef"
# Quiet hours and the cap off, and a rate per key no benchmark reaches: the limiter's cost is
# measured, not its refusals.
SETTINGS = """\
[automator]
from = "Lotus Shop <hello@shop.example.com>"
timezone = "Asia/Ho_Chi_Minh"
quiet_hours = false
frequency_cap = false

[api]
requests_per_second = 100000
burst = 100000
"""
TICK = 1 / os.sysconf("SC_CLK_TCK")  # seconds per clock tick in /proc/PID/stat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--contacts", type=int, default=5_000, help="shoppers the events are spread over")
    parser.add_argument("--database-url", help="an empty PostgreSQL database instead of a SQLite file")
    parser.add_argument("--keep", action="store_true", help="keep the project folder and its database")
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="automator-ingest-"))
    try:
        run(options, folder)
    finally:
        if options.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def run(options: argparse.Namespace, folder: Path) -> None:
    project = make_project(folder)
    env = {**os.environ, "AUTOMATOR_SECRET": SECRET, "AUTOMATOR_OUTBOX": str(folder / "outbox")}
    env["AUTOMATOR_DATABASE_URL"] = options.database_url or f"sqlite:///{project / 'automator.db'}"
    key = automator(env, project, "keys", "create", "bench", "--scope", "events:write").splitlines()[-1]
    bodies = requests(options)
    port = free_port()
    log = (folder / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [*AUTOMATOR, "--project", str(project), "run", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1/events"
    try:
        wait_for(f"http://127.0.0.1:{port}/health", daemon)
        send(url, key, warm_up(options), options.clients)  # connections, caches, the first tick
        load = os.getloadavg()[0]
        daemon_cpu, own_cpu, started = cpu_of(daemon.pid), time.process_time(), time.perf_counter()
        answers = send(url, key, bodies, options.clients)
        wall = time.perf_counter() - started
        daemon_cpu, own_cpu = cpu_of(daemon.pid) - daemon_cpu, time.process_time() - own_cpu
        replayed = send(url, key, random.Random(options.seed).sample(bodies, min(20, len(bodies))), 2)
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()
    check(answers, replayed, options, env["AUTOMATOR_DATABASE_URL"])
    report(answers, wall, daemon_cpu, own_cpu, load, options)


def make_project(folder: Path) -> Path:
    project = folder / "project"
    project.mkdir()
    shutil.copytree(REPO / "rules", project / "rules")
    shutil.copytree(REPO / "email_templates", project / "email_templates")
    (project / "automator.toml").write_text(SETTINGS, encoding="utf-8")
    return project


SCRIPT = Path(sys.executable).with_name("automator")
RUN_APP = "from automator.cli import app; app()"
AUTOMATOR = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", RUN_APP]


def automator(env: dict[str, str], project: Path, *args: str) -> str:
    done = subprocess.run(
        [*AUTOMATOR, "--project", str(project), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def requests(options: argparse.Namespace, prefix: str = "evt") -> list[bytes]:
    """The request bodies, made before the clock starts: the clients' JSON is not the API's."""
    rng = random.Random(options.seed)
    start = datetime.now(UTC) - timedelta(days=2)
    events = []
    for number in range(options.events):
        cart_id = f"c{rng.randrange(options.contacts * 2)}"
        total = rng.randrange(100, 5_000) * 1000
        events.append(
            {
                "id": f"{prefix}-{number}",
                "type": "cart_updated",
                "email": f"shopper{rng.randrange(options.contacts)}@example.com",
                "at": (start + timedelta(seconds=number)).isoformat(),
                "properties": {
                    "cart_id": cart_id,
                    "total": total,
                    "currency": "VND",
                    "cart_url": f"https://shop.example.com/cart/{cart_id}",
                    "items": [{"name": "Áo dài lụa", "quantity": 1, "price": total}],
                },
            }
        )
    size = options.batch
    return [json.dumps({"batch": events[i : i + size]}).encode() for i in range(0, len(events), size)]


def warm_up(options: argparse.Namespace) -> list[bytes]:
    few = argparse.Namespace(**{**vars(options), "events": options.batch * options.clients * 2})
    return requests(few, prefix="warm")


def send(url: str, key: str, bodies: list[bytes], clients: int) -> list[tuple[float, dict[str, int]]]:
    """Every body posted by `clients` threads at once: (latency in s, answer) per request."""
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    answers: list[tuple[float, dict[str, int]]] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=60, headers=headers) as session:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                response = session.post(url, content=body)
                took = time.perf_counter() - started
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    return
                answer = response.json()
                answers.append((took, {"accepted": answer["accepted"], "duplicates": answer["duplicates"]}))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a request failed: {failures[0]}")
    return answers


def check(
    answers: list[tuple[float, dict[str, int]]],
    replayed: list[tuple[float, dict[str, int]]],
    options: argparse.Namespace,
    database_url: str,
) -> None:
    """Every event accepted once, stored once; the replayed sample all duplicates."""
    accepted = sum(answer["accepted"] for _, answer in answers)
    store = Store(database_url)
    with store.session() as session:
        keys = table(Event).c.key
        stored = session.execute(select(func.count()).where(keys.like("evt-%"))).scalar()
    store.dispose()
    duplicates = sum(answer["duplicates"] for _, answer in replayed)
    expected = sum(1 for _ in replayed) * options.batch
    agree = accepted == options.events == stored and duplicates == expected
    said = f"accepted {accepted}, stored {stored}, replayed {duplicates}/{expected} duplicates"
    print(f"agreement: {said}  {'AGREE' if agree else 'DISAGREE'}")
    if not agree:
        raise SystemExit(1)


def report(
    answers: list[tuple[float, dict[str, int]]],
    wall: float,
    daemon_cpu: float,
    own_cpu: float,
    load: float,
    options: argparse.Namespace,
) -> None:
    rate = options.events / wall
    cuts = quantiles([took for took, _ in answers], n=100)
    verdict = "PASS" if rate >= GOAL else "MISS"
    shape = f"batches of {options.batch}, {options.clients} clients, {os.cpu_count()} cores"
    print(f"events: {options.events} in {shape}")
    print(f"rate: {rate:,.0f} events/s ({wall:.2f} s)  goal ≥ {GOAL:,}: {verdict}")
    print(f"latency per request: p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")
    print(
        f"cpu: daemon {daemon_cpu:.2f} s ({daemon_cpu / options.events * 1e6:.0f} µs/event), "
        f"clients {own_cpu:.2f} s; load average before {load:.2f} (other work shares the cores)"
    )


def cpu_of(pid: int) -> float:
    """User and system CPU seconds of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(url: str, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited ({daemon.returncode}) before it answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the daemon did not answer within 60 s")


if __name__ == "__main__":
    main()
