"""How fast does automator deliver, next to a bare aiosmtplib loop sending the same mail?

Starts an aiosmtpd sink on 127.0.0.1 (its own process, so it does not share our GIL), queues
N pre-rendered messages in a fresh SQLite file, then in one run times:

- bare: the same emails, built beforehand, sent by `concurrency` aiosmtplib connections in
  a plain loop: no database, no checks, no bookkeeping;
- automator: `Dispatcher.run`, which claims the messages in batches, re-checks each one
  (suppression, rule, lateness, cancel events, stage, quiet hours, cap), builds the email,
  sends it through `SmtpTransport` with the same concurrency and records the outcome.

It prints N, both rates and CPU times per message, and the ratio with PASS or MISS against
the goal (0.7 of the bare loop), from the wall-clock rates and from the CPU per message (the
steadier figure when other work shares the machine):

    python bench/dispatch.py                      # 20k messages, 8 connections
    python bench/dispatch.py -n 2000 --concurrency 4
    python bench/dispatch.py -n 5000 --rounds 3   # alternate both runs three times; medians
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import aiosmtplib

from automator import emails
from automator.engine import Engine, TickReport
from automator.importing import ContactRecord, contact_data
from automator.project import Project, load_project
from automator.store import Store, messages
from automator.store import contacts as contact_store
from automator.store.messages import QueueFilter
from automator.tables import Message
from automator.transports.smtp import SmtpSettings, SmtpTransport

REPO = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC).replace(microsecond=0)
GOAL_RATIO = 0.7
RULE = "abandoned_cart"  # the flagship flow: a cancel event to check, a stage move and a tag after
CHUNK = 500

# Quiet hours and the frequency cap off: every queued message may go now.
SETTINGS = """\
[automator]
from = "Lotus Shop <hello@shop.example.com>"
base_url = "https://shop.example.com"
timezone = "Asia/Ho_Chi_Minh"
secret = "bench-secret"
quiet_hours = false
frequency_cap = false
"""

SUBJECT = "Lan, bạn còn sản phẩm trong giỏ hàng"
TEXT = (
    "Chào Lan,\n\nBạn vẫn còn một vài sản phẩm trong giỏ hàng.\n\n"
    + "- Áo dài lụa x 1: 1.250.000 ₫\n" * 3
    + "\nTổng cộng: 3.750.000 ₫\n\nhttps://shop.example.com/cart/c1\n"
)
HTML = "<html><body>" + "<p>" + TEXT.replace("\n", "<br>") * 4 + "</p></body></html>"


@contextmanager
def smtp_sink(port: int) -> Iterator[None]:
    """aiosmtpd's own Sink handler (accepts and discards), in a child process."""
    command = [
        sys.executable,
        "-m",
        "aiosmtpd",
        "-n",
        "-l",
        f"127.0.0.1:{port}",
        "-c",
        "aiosmtpd.handlers.Sink",
    ]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if sink.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the aiosmtpd sink did not start") from None
                time.sleep(0.05)
        yield
    finally:
        sink.terminate()
        sink.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def open_project(work: Path) -> tuple[Project, Store]:
    root = work / "project"
    root.mkdir()
    shutil.copytree(REPO / "rules", root / "rules")
    shutil.copytree(REPO / "email_templates", root / "email_templates")
    (root / "automator.toml").write_text(SETTINGS, encoding="utf-8")
    project = load_project(root, {"AUTOMATOR_DATABASE_URL": f"sqlite:///{work / 'bench.db'}"})
    if project.errors:
        raise SystemExit("bench: the project does not load:\n" + "\n".join(map(str, project.errors)))
    return project, project.open_store()


def queue_messages(project: Project, store: Store, count: int) -> None:
    """`count` contacts, each with one rendered abandoned-cart message due now."""
    journey, zone = project.journey, project.settings.zone
    for start in range(0, count, CHUNK):
        batch = range(start, min(start + CHUNK, count))
        records = [
            ContactRecord.model_validate(
                {"email": f"shopper{i}@example.com", "first_name": "Lan", "stage": "consideration"}
            )
            for i in batch
        ]
        with store.session() as session:
            contact_store.upsert(session, [contact_data(r, journey, zone) for r in records], NOW)
            ids = contact_store.ids_by_email(session, [r.email for r in records])
            for record in records:
                values = message_values(project, ids[record.email], record.email)
                messages.enqueue(session, values, "queued", TEXT, HTML)


def message_values(project: Project, contact_id: int, email: str) -> dict[str, object]:
    occurred = NOW - timedelta(hours=2)
    return {
        "rule_id": RULE,
        "contact_id": contact_id,
        "email": email,
        "occurrence": f"bench-{contact_id}",
        "occurred_at": occurred,
        "status": "queued",
        "priority": 20,
        "due_at": occurred + timedelta(hours=1),
        "send_at": NOW - timedelta(minutes=1),
        "expires_at": NOW + timedelta(days=1),
        "locale": "vi",
        "subject": SUBJECT,
        "message_id": emails.new_message_id(project.settings.sender),
        "created_at": NOW - timedelta(minutes=1),
    }


def prebuilt_emails(project: Project, store: Store) -> list[emails.OutgoingEmail]:
    """The emails automator will send, built the way the dispatcher builds them."""
    settings = project.settings
    with store.session() as session:
        queued = messages.listing(session, QueueFilter(status="queued", limit=10**9))
    return [build(settings.sender, settings.base_url, settings.secret, m) for m in queued]


def build(sender: str, base_url: str, secret: str, message: Message) -> emails.OutgoingEmail:
    return emails.build_email(
        sender=sender,
        to=message.email,
        to_name="Lan",
        subject=message.subject,
        text=TEXT,
        html=HTML,
        message_id=message.message_id,
        rule_id=message.rule_id,
        date=message.send_at,
        list_unsubscribe_url=emails.unsubscribe_url(base_url, secret, message.email),
    )


async def bare_loop(port: int, mail: list[emails.OutgoingEmail], concurrency: int) -> int:
    """`concurrency` connections, each sending the next email until none is left."""
    pending = iter(mail)
    sent = 0

    async def connection() -> None:
        nonlocal sent
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await smtp.connect()
        for email in pending:  # shared: each email is taken by exactly one connection
            await smtp.sendmail(email.sender, list(email.recipients), email.data)
            sent += 1
        await smtp.quit()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return sent


async def automator_dispatch(project: Project, store: Store, port: int, concurrency: int) -> int:
    url = f"smtp://127.0.0.1:{port}?timeout=30&pool_size={concurrency}&concurrency={concurrency}"
    transport = SmtpTransport(SmtpSettings.from_url(url))
    try:
        return await Engine(project, store, transport).dispatcher().run(NOW, TickReport(NOW))
    finally:
        await transport.close()


@dataclass
class Run:
    """One timed send of the whole queue."""

    sent: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else float("inf")

    @property
    def cpu_ms(self) -> float:
        """CPU time per message: what counts when the machine is shared (wall time is not ours)."""
        return self.cpu / max(self.sent, 1) * 1000


def timed(what: str, send: Callable[[], int], profile: Path | None = None) -> Run:
    """Runs `send` (returns how many it sent), prints and returns its timings."""
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    sent = send()
    if profiler:
        profiler.disable()
    run = Run(sent, time.perf_counter() - started, time.process_time() - cpu)
    if profiler and profile:
        profiler.dump_stats(profile)
    print(
        f"{what}: {run.sent} sent in {run.seconds:.1f} s "
        f"(CPU {run.cpu:.1f} s, {run.cpu_ms:.2f} ms per message)",
        flush=True,
    )
    return run


def fresh_store(project: Project, work: Path, queued: Path) -> Store:
    """The store as it was right after queueing (each automator round sends the same queue)."""
    for suffix in ("-wal", "-shm"):
        (work / f"bench.db{suffix}").unlink(missing_ok=True)
    shutil.copy(queued, work / "bench.db")
    return project.open_store()


def automator_round(
    project: Project, work: Path, queued: Path, port: int, concurrency: int, profile: Path | None
) -> Run:
    store = fresh_store(project, work, queued)

    def send() -> int:
        return asyncio.run(automator_dispatch(project, store, port, concurrency))

    try:
        return timed("automator dispatch", send, profile)
    finally:
        store.dispose()


def verdict(ratio: float, complete: bool) -> str:
    return "PASS" if ratio >= GOAL_RATIO and complete else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--messages", type=int, default=20_000, help="messages to send (default 20000)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="SMTP connections on both sides (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="bare and automator runs, alternated; medians reported"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write cProfile stats of automator's first run to this file (the database work runs "
        "in a worker thread, which cProfile does not see)",
    )
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs before the run", flush=True)

    bare_runs: list[Run] = []
    automator_runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="automator-bench-") as folder:
        work = Path(folder)
        project, store = open_project(work)
        started = time.perf_counter()
        queue_messages(project, store, args.messages)
        mail = prebuilt_emails(project, store)
        store.dispose()
        queued = work / "queued.db"
        shutil.copy(work / "bench.db", queued)
        print(f"queued {args.messages} messages in {time.perf_counter() - started:.1f} s", flush=True)
        port = free_port()
        with smtp_sink(port):
            for round_ in range(args.rounds):
                bare_runs.append(
                    timed(
                        "bare aiosmtplib loop", lambda: asyncio.run(bare_loop(port, mail, args.concurrency))
                    )
                )
                profile = args.profile if round_ == 0 else None
                automator_runs.append(automator_round(project, work, queued, port, args.concurrency, profile))

    complete = all(run.sent == args.messages for run in bare_runs + automator_runs)
    bare, ours = median(r.rate for r in bare_runs), median(r.rate for r in automator_runs)
    bare_ms, our_ms = median(r.cpu_ms for r in bare_runs), median(r.cpu_ms for r in automator_runs)
    rounds = f", medians of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"N = {args.messages}, concurrency = {args.concurrency}{rounds}")
    print(f"bare aiosmtplib: {bare:,.0f} messages/s, {bare_ms:.2f} ms CPU per message")
    print(f"automator:       {ours:,.0f} messages/s, {our_ms:.2f} ms CPU per message")
    print(f"ratio:           {ours / bare:.2f} (goal >= {GOAL_RATIO}) {verdict(ours / bare, complete)}")
    # Both sides are CPU-bound, so on a machine shared with other work the CPU per message is
    # the steadier measure of the same ratio.
    cpu_ratio = bare_ms / our_ms
    print(f"CPU ratio:       {cpu_ratio:.2f} (goal >= {GOAL_RATIO}) {verdict(cpu_ratio, complete)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
