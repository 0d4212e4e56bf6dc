"""How fast does automator deliver: into the file outbox (its own cost, nothing waits on a
network), or over SMTP next to a bare aiosmtplib loop sending the same mail?

The queue is a shop's abandoned carts as a dispatcher meets them: N messages queued in the
order of their carts' times, as ticks queue them (`--scattered`: in their shoppers' order),
rendered by the real templates (each contact has a name of its own, which every subject
carries, so no header's encoding is found in a cache), due at a fixed NOW (05:00 UTC: noon in
Hanoi, 05:00 in London, midnight in New York), with quiet hours (21:00-08:00 in the contact's
zone) and the frequency cap (2 per 24 h) on. Most may go now; the others exercise every re-check:

- about 2% of the addresses are suppressed, 1% of the messages are past their lateness and
  1% of the contacts are in a stage the rule does not target;
- 4% are cancelled by an order placed after the cart, 4% superseded by a newer update of the
  same cart; every contact also has older carts and page views the checks read past;
- the 10% in London or New York wait for the end of their quiet hours;
- 3% of the contacts were sent two emails in the last 24 hours and 5% one, and 4% have two
  carts queued: the cap makes some of those wait.

It leaves out the other rules (date triggers, coupons: none of the messages has one, and the
cart template does not show the send time, so no wait renders it again), and failed sends
(the outbox takes every file; the SMTP sink accepts every message).

Before a speed is reported, every outcome is checked against what the generator planned
for each message (AGREE), and the outbox against what was sent. In one run it times:

- bare: the emails automator will send, built beforehand, written by `FileTransport` alone
  (file mode), or sent by `concurrency` aiosmtplib connections in a plain loop (SMTP mode):
  no database, no checks, no bookkeeping;
- automator: `Dispatcher.run`, which claims the messages in batches, re-checks them, builds
  the emails, hands them to the transport and records the outcomes.

Each round starts from a copy of the queued store. It prints both rates and CPU times per
message; file mode judges automator's rate against 5,000 messages/s, SMTP mode the ratio to
the bare loop against 0.7 (from the wall-clock rates and from the CPU per message, the
steadier figure when other work shares the machine):

    python bench/dispatch.py --transport file        # 20k messages into a file outbox
    python bench/dispatch.py --transport file --outbox /dev/shm   # the outboxes on tmpfs
    python bench/dispatch.py                         # the same over SMTP, 8 connections
    python bench/dispatch.py -n 5000 --rounds 3      # alternate both runs three times; medians
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import gc
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import aiosmtplib
import floor
import machine
from sqlalchemy import select

from automator import emails, letters
from automator.dispatch import BATCH
from automator.engine import Engine, TickReport
from automator.importing import import_contacts, import_events
from automator.model import Rule
from automator.packing import unpack
from automator.project import Project, load_project
from automator.rendering import StoredContent
from automator.store import Store, queueing, suppressions, table
from automator.store.contacts import ids_by_email
from automator.store.messages import Content
from automator.tables import Event, Message
from automator.transports import Transport
from automator.transports.file import FileTransport
from automator.transports.smtp import SmtpTransport
from automator.transports.smtp_settings import SmtpSettings

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # noon in Hanoi, 05:00 in London, midnight in New York
GOAL_RATIO = 0.7  # SMTP: of the bare aiosmtplib loop
GOAL_FILE_RATE = 5_000.0  # file outbox: messages sent per second
RULE = "abandoned_cart"  # the flagship flow: a cancel event, latest_per, a stage move and a tag after
CHUNK = 500

SETTINGS = """\
[automator]
from = "Lotus Shop <hello@shop.example.com>"
base_url = "https://shop.example.com"
timezone = "Asia/Ho_Chi_Minh"
secret = "bench-secret-bench-secret-bench-secret"
render_workers = 1

[quiet_hours]
start = "21:00"
end = "08:00"

[frequency_cap]
max = 2
per = "24h"
"""
# The shipped subjects are the same for everyone; these carry the contact's name and the total.
SUBJECTS = {
    "subject.txt": '{{ contact.first_name or "Hi" }}, your cart of {{ event.total|money(event.currency) }} '
    "is waiting",
    "subject.vi.txt": '{{ contact.first_name or "Bạn" }} ơi, giỏ hàng '
    "{{ event.total|money(event.currency) }} đang chờ",
}

# (zone, share): NOW is inside quiet hours in London and New York only.
ZONES = [
    ("Asia/Ho_Chi_Minh", 0.55),
    ("", 0.10),
    ("Asia/Singapore", 0.13),
    ("Australia/Sydney", 0.12),
    ("Europe/London", 0.05),
    ("America/New_York", 0.05),
]
QUIET_ZONES = {"Europe/London", "America/New_York"}
VIETNAMESE_ZONES = {"Asia/Ho_Chi_Minh", ""}
FIRST_VI = ["Lan", "Minh", "Hoa", "Tuấn", "Linh", "Hùng", "Mai", "Quang", "Thảo", "Dũng", "Hạnh", "Phúc"]
MIDDLE_VI = ["Thị", "Văn", "Ngọc", "Đức", "Thu", "Minh", "Hoài", "Thanh", "Quốc", "Bảo", "Gia", "Kim"]
LAST_VI = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương"]
FIRST_EN = [
    "Anna",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Frank",
    "Grace",
    "Henry",
    "Isla",
    "Jack",
    "Kate",
    "Liam",
]
MIDDLE_EN = ["J.", "M.", "R.", "S.", "T.", "A.", "E.", "L.", "K.", "P.", "D.", "W."]
LAST_EN = [
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Clark",
    "Evans",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
]
PRODUCTS_VI = [
    ("Áo dài lụa", 1_250_000),
    ("Nón lá", 150_000),
    ("Cà phê Đà Lạt", 220_000),
    ("Túi cói", 380_000),
]
PRODUCTS_EN = [("Silk scarf", 39.0), ("Coffee beans", 14.5), ("Rattan bag", 52.0), ("Tea set", 68.0)]
SENT = "sent"


@dataclass
class Shopper:
    """A contact of the bench, with what its messages' re-checks depend on."""

    email: str
    first_name: str
    last_name: str
    timezone: str
    locale: str
    stage: str
    suppressed: bool
    sent_before: list[datetime]  # its messages sent in the last 24 hours
    orders: list[datetime] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass
class Cart:
    """One queued message: its cart event, what happens after it, and the outcome planned."""

    shopper: Shopper
    key: str
    cart_id: str
    at: datetime
    properties: dict[str, Any]
    late: bool = False  # queued more than a day before NOW: past its lateness
    updated: bool = False  # a newer update of the same cart follows
    event_id: int = 0
    message: int = 0  # the queued message's id


def zone_of(rng: random.Random) -> str:
    zones, weights = zip(*ZONES, strict=True)
    return rng.choices(zones, weights)[0]


def shopper(rng: random.Random, index: int) -> Shopper:
    zone = zone_of(rng)
    vi = zone in VIETNAMESE_ZONES
    first, middle, last = (FIRST_VI, MIDDLE_VI, LAST_VI) if vi else (FIRST_EN, MIDDLE_EN, LAST_EN)
    roll = rng.random()
    sent = 2 if roll < 0.03 else 1 if roll < 0.08 else 0
    return Shopper(
        email=f"shopper{index}@example.com",
        first_name=rng.choice(first),
        last_name=f"{rng.choice(middle)} {rng.choice(last)}",
        timezone=zone,
        locale="vi" if vi else "en",
        stage="retention" if rng.random() < 0.01 else rng.choice(["consideration", "conversion"]),
        suppressed=rng.random() < 0.02,
        sent_before=[NOW - timedelta(hours=rng.uniform(1, 23)) for _ in range(sent)],
    )


def cart_properties(rng: random.Random, cart_id: str, vi: bool) -> dict[str, Any]:
    products = PRODUCTS_VI if vi else PRODUCTS_EN
    items = [
        {"name": name, "quantity": rng.randint(1, 3), "price": price}
        for name, price in rng.sample(products, rng.randint(1, 3))
    ]
    return {
        "cart_id": cart_id,
        "items": items,
        "total": sum(item["price"] * item["quantity"] for item in items),
        "currency": "VND" if vi else "USD",
        "cart_url": f"https://shop.example.com/cart/{cart_id}",
    }


@dataclass
class Shop:
    """The generated store: contacts, their events, and one cart per message to queue."""

    shoppers: list[Shopper]
    carts: list[Cart]
    events: list[dict[str, Any]]


def generate(count: int, seed: int) -> Shop:
    rng = random.Random(seed)
    shoppers: list[Shopper] = []
    carts: list[Cart] = []
    events: list[dict[str, Any]] = []

    def event(type_: str, who: Shopper, at: datetime, properties: dict[str, Any]) -> str:
        assert at.microsecond == 0, "events are imported to the second"
        key = f"e{len(events)}"
        events.append({"id": key, "type": type_, "email": who.email, "at": iso(at), "properties": properties})
        return key

    while len(carts) < count:
        who = shopper(rng, len(shoppers))
        shoppers.append(who)
        vi = who.locale == "vi"
        for old in range(rng.randint(1, 3)):  # older carts, never ordered, and page views
            at = seconds(NOW - timedelta(days=rng.uniform(3, 60)))
            event("cart_updated", who, at, cart_properties(rng, f"old-{len(shoppers)}-{old}", vi))
            event("page_viewed", who, at - timedelta(minutes=5), {"path": "/sale"})
        for _ in range(2 if rng.random() < 0.04 else 1):
            cart_id = f"cart-{len(carts)}"
            late = rng.random() < 0.01
            at = seconds(NOW - timedelta(hours=rng.uniform(26, 30) if late else rng.uniform(1.5, 8)))
            properties = cart_properties(rng, cart_id, vi)
            cart = Cart(who, event("cart_updated", who, at, properties), cart_id, at, properties, late)
            roll = rng.random()
            if roll < 0.04:
                order = {"order_id": f"ORD-{cart_id}", "cart_id": cart_id, "total": properties["total"]}
                who.orders.append(seconds(at + timedelta(minutes=rng.uniform(5, 60))))
                event("order_placed", who, who.orders[-1], order)
            elif roll < 0.08:
                cart.updated = True
                newer = dict(properties, total=properties["total"] * 2)
                event("cart_updated", who, seconds(at + timedelta(minutes=rng.uniform(5, 60))), newer)
            carts.append(cart)
    return Shop(shoppers, carts, events)


def seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def planned(shop: Shop, rule: Rule) -> dict[int, str]:
    """What the dispatcher should make of each message (by id), worked out here on its own,
    in the order it takes them (most important first, then by send time and id)."""
    outcomes: dict[int, str] = {}
    going: Counter[str] = Counter()
    for cart in sorted(shop.carts, key=lambda cart: (send_at(cart), cart.message)):
        who = cart.shopper
        if who.suppressed:
            outcome = "suppressed"
        elif cart.late:
            outcome = "cancelled: too late"
        elif any(order > cart.at for order in who.orders):  # any order of theirs since
            outcome = "cancelled: order_placed"
        elif cart.updated:
            outcome = "cancelled: superseded"
        elif who.orders or who.stage not in rule.stages:  # an order moved them to retention
            outcome = "cancelled: stage changed"
        elif who.timezone in QUIET_ZONES:
            outcome = "waiting: quiet hours"
        elif len(who.sent_before) + going[who.email] >= 2:
            outcome = "waiting: frequency cap"
        else:
            going[who.email] += 1
            outcome = SENT
        outcomes[cart.message] = outcome
    return outcomes


def send_at(cart: Cart) -> datetime:
    return cart.at + timedelta(hours=1)


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


def open_project(work: Path, database_url: str | None = None) -> tuple[Project, Store]:
    root = work / "project"
    root.mkdir()
    shutil.copytree(REPO / "rules", root / "rules")
    shutil.copytree(REPO / "email_templates", root / "email_templates")
    for name, subject in SUBJECTS.items():
        (root / "email_templates" / RULE / name).write_text(subject, encoding="utf-8")
    (root / "automator.toml").write_text(SETTINGS, encoding="utf-8")
    url = database_url or f"sqlite:///{work / 'bench.db'}"
    project = load_project(root, {"AUTOMATOR_DATABASE_URL": url})
    if project.errors:
        raise SystemExit("bench: the project does not load:\n" + "\n".join(map(str, project.errors)))
    return project, project.open_store()


def fill_store(
    project: Project, store: Store, shop: Shop, work: Path, scattered: bool
) -> dict[int, emails.OutgoingEmail]:
    """Import the contacts and events the way the CLI does, then queue one rendered message
    per cart, as ticks queue them: in the order of the carts' times (each tick queues the
    carts abandoned since the one before), so a message's id follows its send time. With
    `scattered`, in the order of their shoppers instead: ids that do not follow the send
    times, so that the messages of one batch sit on pages far apart. Returns the email each
    message becomes when sent."""
    journey, zone = project.journey, project.settings.zone
    contacts_csv, events_jsonl = work / "contacts.csv", work / "events.jsonl"
    with contacts_csv.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "first_name", "last_name", "locale", "timezone", "stage"])
        out.writerows(
            [s.email, s.first_name, s.last_name, s.locale, s.timezone, s.stage] for s in shop.shoppers
        )
    with events_jsonl.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in shop.events)
    imported = NOW - timedelta(days=2)
    # The events move nobody: carts keep a contact where it is, and an order (to retention)
    # cancels its cart's message before the stage is looked at.
    assert not import_contacts(store, contacts_csv, journey, zone, imported).errors
    assert not import_events(store, events_jsonl, journey, imported).errors
    events = table(Event)
    with store.session() as session:
        ids = ids_by_email(session, [s.email for s in shop.shoppers])
        keys = {key: id_ for key, id_ in session.execute(select(events.c.key, events.c.id))}
        for who in shop.shoppers:
            who.id = ids[who.email]
            if who.suppressed:
                suppressions.add(session, who.email, "unsubscribed", "", imported)
        for cart in shop.carts:
            cart.event_id = keys[cart.key]
    engine = Engine(project, store, FileTransport(work / "unused"))
    try:
        return queue(project, store, engine, shop, scattered)
    finally:
        engine.close()


def queue(
    project: Project, store: Store, engine: Engine, shop: Shop, scattered: bool
) -> dict[int, emails.OutgoingEmail]:
    rule = project.rule(RULE)
    assert rule is not None
    settings = project.settings
    built: dict[int, emails.OutgoingEmail] = {}
    earlier = [
        earlier_message(rule, who, at, n) for who in shop.shoppers for n, at in enumerate(who.sent_before)
    ]
    with store.session() as session:
        queueing.insert_messages(session, earlier)
    carts = shop.carts if scattered else sorted(shop.carts, key=lambda cart: cart.at)
    for start in range(0, len(carts), CHUNK):
        chunk = carts[start : start + CHUNK]
        values = [message_values(project, rule, cart) for cart in chunk]
        jobs = [
            engine.renderer.job(rule, cart.shopper, None, cart.at, send_at(cart), cart.properties)
            for cart in chunk
        ]
        rendered = engine.render_pool.store_each(jobs)
        for row, content in zip(values, rendered, strict=True):
            assert isinstance(content, StoredContent), content
            row["subject"] = content.subject
        with store.session() as session:
            ids = queueing.insert_messages(session, values)
            for cart in chunk:
                cart.message = ids[(cart.shopper.id, cart.key)]
            queueing.insert_contents(
                session,
                [
                    (cart.message, c.text, c.html)
                    for cart, c in zip(chunk, rendered, strict=True)
                    if isinstance(c, StoredContent)
                ],
            )
            queueing.record_history(session, [(cart.message, "queued", "queued") for cart in chunk], NOW)
        for cart, row, content in zip(chunk, values, rendered, strict=True):
            assert isinstance(content, StoredContent)
            stored = Message(
                email=row["email"], subject=row["subject"], message_id=row["message_id"], rule_id=RULE
            )
            bodies = Content(unpack(content.text), unpack(content.html))
            built[cart.message] = letters.build_stored(settings, cart.shopper, stored, bodies, NOW)
    return built


def message_values(project: Project, rule: Rule, cart: Cart) -> dict[str, Any]:
    due = send_at(cart)
    return {
        "rule_id": rule.id,
        "contact_id": cart.shopper.id,
        "email": cart.shopper.email,
        "occurrence": cart.key,
        "occurred_at": cart.at,
        "event_id": cart.event_id,
        "status": "queued",
        "hold_kind": None,
        "priority": rule.priority,
        "due_at": due,
        "send_at": due,
        "expires_at": due + rule.lateness,
        "locale": cart.shopper.locale,
        "subject": "",
        "message_id": emails.new_message_id(project.settings.sender),
        "created_at": due,
        "skip_policies": False,
        "attempts": 0,
    }


def earlier_message(rule: Rule, who: Shopper, at: datetime, n: int) -> dict[str, Any]:
    """A message sent to `who` at `at`: it counts for the frequency cap."""
    return {
        "rule_id": rule.id,
        "contact_id": who.id,
        "email": who.email,
        "occurrence": f"earlier-{n}",
        "occurred_at": at - timedelta(hours=1),
        "event_id": None,
        "status": "sent",
        "hold_kind": None,
        "priority": rule.priority,
        "due_at": at,
        "send_at": at,
        "expires_at": at + rule.lateness,
        "locale": who.locale,
        "subject": "earlier",
        "message_id": f"<earlier-{who.id}-{n}@shop.example.com>",
        "created_at": at,
        "sent_at": at,
        "skip_policies": False,
        "attempts": 1,
    }


async def bare_smtp(port: int, mail: list[emails.OutgoingEmail], concurrency: int) -> int:
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


async def bare_file(outbox: Path, mail: list[emails.OutgoingEmail]) -> int:
    """The file transport alone writing the emails: the floor under automator's time."""
    outcomes = await FileTransport(outbox).send_many(mail)
    return sum(outcome is None for outcome in outcomes)


async def automator_dispatch(engine: Engine, report: TickReport, batch: int) -> int:
    try:
        return await engine.dispatcher().run(NOW, report, batch)
    finally:
        await engine.transport.close()


def children_cpu() -> float:
    """CPU seconds the live child processes (the render workers) have used so far."""
    total = 0
    for child in multiprocessing.active_children():
        stat = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(stat[11]) + int(stat[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


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
    started, cpu = time.perf_counter(), time.process_time() + children_cpu()
    if profiler:
        profiler.enable()
    sent = send()
    if profiler:
        profiler.disable()
    run = Run(sent, time.perf_counter() - started, time.process_time() + children_cpu() - cpu)
    if profiler and profile:
        profiler.dump_stats(profile)
    print(
        f"{what}: {run.sent} sent in {run.seconds:.2f} s "
        f"(CPU {run.cpu:.2f} s, {run.cpu_ms:.3f} ms per message; {run.rate:,.0f}/s)",
        flush=True,
    )
    return run


def fresh_store(project: Project, work: Path, queued: Path) -> Store:
    """The store as it was right after queueing (each automator round sends the same queue)."""
    for suffix in ("-wal", "-shm"):
        (work / f"bench.db{suffix}").unlink(missing_ok=True)
    shutil.copy(queued, work / "bench.db")
    return project.open_store()


@dataclass
class Bench:
    args: argparse.Namespace
    project: Project
    work: Path
    queued: Path
    expected: Counter[str]
    outboxes: Path  # where each round's outbox is made
    port: int = 0

    def transport(self, outbox: Path) -> Transport:
        if self.args.transport == "file":
            return FileTransport(outbox)
        concurrency = self.args.concurrency
        url = f"smtp://127.0.0.1:{self.port}?timeout=30&pool_size={concurrency}&concurrency={concurrency}"
        return SmtpTransport(SmtpSettings.from_url(url))

    def bare(self, mail: list[emails.OutgoingEmail], round_: int) -> Run:
        if self.args.transport == "file":
            outbox = self.outboxes / f"bare-{round_}"
            try:
                return timed("bare file transport", lambda: asyncio.run(bare_file(outbox, mail)))
            finally:
                shutil.rmtree(outbox, ignore_errors=True)  # each round starts from an empty folder
        return timed(
            "bare aiosmtplib loop", lambda: asyncio.run(bare_smtp(self.port, mail, self.args.concurrency))
        )

    def automator(self, round_: int, profile: Path | None, recording: floor.Recording | None = None) -> Run:
        """One dispatch of the whole queue, timed. With `recording`, its statements are
        recorded too, which slows it: such a run is left out of the reported figures."""
        store = fresh_store(self.project, self.work, self.queued)
        outbox = self.outboxes / f"outbox-{round_}"
        report = TickReport(NOW)
        # Its render workers build the emails. A daemon starts them with itself: they are up
        # before the timing starts, as a daemon's are when its first batch comes due.
        engine = Engine(self.project, store, self.transport(outbox))
        warming = engine.render_pool.warm()
        if warming is not None:
            warming.result()

        def send() -> int:
            with recording.of(store.engine) if recording else nullcontext():
                return asyncio.run(automator_dispatch(engine, report, self.args.batch))

        try:
            run = timed("automator dispatch" + (", recorded" if recording else ""), send, profile)
        finally:
            engine.close()
            store.dispose()
        try:
            self.check(report, outbox)
        finally:
            shutil.rmtree(outbox, ignore_errors=True)
        return run

    def check(self, report: TickReport, outbox: Path) -> None:
        """The outcomes must be the ones planned, and the outbox must hold what was sent."""
        found: Counter[str] = Counter()
        for rule in report.rules.values():
            found.update(rule.outcomes)
            found[SENT] += rule.sent
        same = found == self.expected
        print(f"  outcomes {'AGREE' if same else 'DISAGREE'}: {dict(sorted(found.items()))}", flush=True)
        if not same:
            raise SystemExit(f"bench: planned {dict(sorted(self.expected.items()))}")
        if self.args.transport == "file":
            files = sum(1 for _ in outbox.glob("*.eml"))
            if files != found[SENT]:
                raise SystemExit(f"bench: {files} files in the outbox for {found[SENT]} messages sent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "-n", "--messages", type=int, default=20_000, help="messages to queue (default 20000)"
    )
    parser.add_argument(
        "--transport",
        choices=["smtp", "file"],
        default="smtp",
        help="where automator delivers (default smtp)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="SMTP connections on both sides (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="bare and automator runs, alternated; medians reported"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--outbox",
        type=Path,
        help="folder to make the file outboxes in (default: the temporary folder holding the database)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write cProfile stats of automator's first run to this file (the database work runs "
        "in a worker thread, which cProfile does not see)",
    )
    parser.add_argument(
        "--daemons",
        type=lambda value: [int(n) for n in value.split(",")],
        help="e.g. 1,2,3: that many daemon processes sharing one PostgreSQL, over SMTP to sinks "
        "that only count (see bench/daemons.py)",
    )
    parser.add_argument(
        "--database-url",
        help="with --daemons: a PostgreSQL server (postgresql+psycopg://user@host:port/db) whose user "
        "may create databases; default: a throw-away server started as tests/postgres.py does",
    )
    parser.add_argument(
        "--sinks", type=int, help="with --daemons: SMTP sink processes (default: one per daemon)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"the most claims a dispatcher holds, in two claims of half (default {BATCH})",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="after the timed rounds, record the statements of one more dispatch and replay them "
        "on a plain sqlite3 connection: the database's own time (see bench/floor.py)",
    )
    parser.add_argument(
        "--scattered",
        action="store_true",
        help="queue the messages in their shoppers' order, not their carts' times: ids that do "
        "not follow the send times (as when one tick queues a crowd whose local send times differ)",
    )
    args = parser.parse_args(argv)
    if args.floor and args.daemons:
        parser.error("--floor replays a SQLite store's statements; --daemons runs on PostgreSQL")
    if args.outbox and not args.outbox.is_dir():
        parser.error(f"--outbox {args.outbox}: no such folder (the bench makes its outboxes inside it)")
    print(machine.describe(), flush=True)
    if args.daemons:
        return main_daemons(args)

    bare_runs: list[Run] = []
    automator_runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="automator-bench-") as folder:
        work = Path(folder)
        project, store = open_project(work)
        started = time.perf_counter()
        shop = generate(args.messages, args.seed)
        built = fill_store(project, store, shop, work, args.scattered)
        store.dispose()
        rule = project.rule(RULE)
        assert rule is not None
        plan = planned(shop, rule)
        expected = Counter(plan.values())
        mail = [built[message] for message, outcome in sorted(plan.items()) if outcome == SENT]
        queued = work / "queued.db"
        shutil.copy(work / "bench.db", queued)
        print(
            f"queued {len(shop.carts)} messages for {len(shop.shoppers)} contacts "
            f"({len(shop.events)} events) in {time.perf_counter() - started:.1f} s; "
            f"planned: {dict(sorted(expected.items()))}",
            flush=True,
        )
        # The generator's million objects are not a daemon's: every full collection of the
        # garbage collector would go through them in the timed runs.
        del shop, built, plan
        gc.collect()
        outboxes = work if args.outbox is None else Path(tempfile.mkdtemp(prefix="outbox-", dir=args.outbox))
        bench = Bench(args, project, work, queued, expected, outboxes)
        if args.transport == "smtp":
            bench.port = free_port()
        try:
            with smtp_sink(bench.port) if bench.port else nullcontext():
                for round_ in range(args.rounds):
                    bare_runs.append(bench.bare(mail, round_))
                    profile = args.profile if round_ == 0 else None
                    automator_runs.append(bench.automator(round_, profile))
                if args.floor:
                    recording = floor.Recording()
                    recorded = bench.automator(args.rounds, None, recording)
                    replayed = floor.replay(recording, queued, work / "floor.db")
        finally:
            if outboxes != work:
                shutil.rmtree(outboxes, ignore_errors=True)

    complete = all(run.sent == expected[SENT] for run in bare_runs + automator_runs)
    bare, ours = median(r.rate for r in bare_runs), median(r.rate for r in automator_runs)
    bare_ms, our_ms = median(r.cpu_ms for r in bare_runs), median(r.cpu_ms for r in automator_runs)
    rounds = f", medians of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"N = {args.messages} queued, {expected[SENT]} sent, transport {args.transport}{rounds}")
    bare_name = "bare file transport" if args.transport == "file" else "bare aiosmtplib"
    print(f"{bare_name + ':':<21}{bare:,.0f} messages/s, {bare_ms:.3f} ms CPU per message")
    print(f"{'automator:':<21}{ours:,.0f} messages/s, {our_ms:.3f} ms CPU per message")
    if args.floor:
        floor.report(replayed, recorded.sent, ours)
    if args.transport == "file":
        met = ours >= GOAL_FILE_RATE and complete
        print(
            f"rate:                {ours:,.0f}/s (goal >= {GOAL_FILE_RATE:,.0f}/s) "
            + ("PASS" if met else "MISS")
        )
        return 0
    print(f"ratio:               {ours / bare:.2f} (goal >= {GOAL_RATIO}) {verdict(ours / bare, complete)}")
    # Both sides are CPU-bound, so on a machine shared with other work the CPU per message is
    # the steadier measure of the same ratio.
    cpu_ratio = bare_ms / our_ms
    print(f"CPU ratio:           {cpu_ratio:.2f} (goal >= {GOAL_RATIO}) {verdict(cpu_ratio, complete)}")
    return 0


def main_daemons(args: argparse.Namespace) -> int:
    """`--daemons 1,2,3`: the same queue on PostgreSQL, delivered by that many daemon processes."""
    from daemons import Databases, Sinks, run_daemons, server_cpu

    with (
        tempfile.TemporaryDirectory(prefix="automator-bench-") as folder,
        postgres(args) as (url, data),
    ):
        work = Path(folder)
        databases = Databases(url)
        project, store = open_project(work, databases.fresh_queued())
        started = time.perf_counter()
        shop = generate(args.messages, args.seed)
        fill_store(project, store, shop, work, args.scattered)
        store.dispose()
        databases.analyze_queued()
        rule = project.rule(RULE)
        assert rule is not None
        expected = Counter(planned(shop, rule).values())
        print(
            f"queued {len(shop.carts)} messages on PostgreSQL in {time.perf_counter() - started:.1f} s; "
            f"planned: {dict(sorted(expected.items()))}",
            flush=True,
        )
        del shop
        gc.collect()
        sinks = Sinks.start(args.sinks or max(args.daemons))
        rates: dict[int, list[float]] = {count: [] for count in args.daemons}
        try:
            for _ in range(args.rounds):
                for count in args.daemons:
                    queued = databases.fresh_run()
                    server = (lambda: server_cpu(data)) if data else None
                    run = run_daemons(
                        count, work / "project", queued, sinks, args.concurrency, args.batch, server
                    )
                    same = run.outcomes == expected and run.received == run.sent
                    print(
                        f"{count} daemon(s), {run.workers} render worker(s) each: {run.sent} sent in "
                        f"{run.seconds:.2f} s ({run.rate:,.0f}/s); "
                        f"CPU: daemons {run.cpu:.2f} s ({run.cpu / max(run.sent, 1) * 1000:.3f} ms per "
                        f"message), sinks {run.sink_cpu:.2f} s, PostgreSQL {shown(run.server_cpu)}; "
                        f"outcomes {'AGREE' if same else 'DISAGREE'}",
                        flush=True,
                    )
                    if not same:
                        raise SystemExit(
                            f"bench: planned {dict(sorted(expected.items()))}, got "
                            f"{dict(sorted(run.outcomes.items()))}; the sinks counted {run.received}"
                        )
                    rates[count].append(run.rate)
        finally:
            sinks.stop()
            databases.dispose()
    one = median(rates[args.daemons[0]])
    rounds = f", medians of {args.rounds} rounds" if args.rounds > 1 else ""
    print(
        f"N = {args.messages} queued, {expected[SENT]} sent, PostgreSQL, {len(sinks.ports)} sink(s){rounds}"
    )
    for count, found in rates.items():
        print(
            f"{count} daemon(s): {median(found):,.0f} messages/s "
            f"({median(found) / one:.2f}x {args.daemons[0]})"
        )
    if 1 in rates and 2 in rates:
        ratio = median(rates[2]) / median(rates[1])
        print(f"two daemons / one:   {ratio:.2f} (goal >= 1.5) {'PASS' if ratio >= 1.5 else 'MISS'}")
    return 0


def shown(seconds: float | None) -> str:
    return "n/a (not started by the bench)" if seconds is None else f"{seconds:.2f} s"


@contextmanager
def postgres(args: argparse.Namespace) -> Iterator[tuple[str, Path | None]]:
    """The server `--database-url` names, or a throw-away one (tests/postgres.py), and the
    latter's data folder."""
    if args.database_url:
        yield args.database_url, None
        return
    sys.path.insert(0, str(REPO))
    from tests.postgres import PostgresServer

    # A folder of its own: the server runs as the `postgres` user when we are root.
    with tempfile.TemporaryDirectory(prefix="automator-pg-") as root:
        server = PostgresServer(Path(root))
        server.start()
        try:
            yield server.url("postgres"), server.data
        finally:
            server.stop()


def verdict(ratio: float, complete: bool) -> str:
    return "PASS" if ratio >= GOAL_RATIO and complete else "MISS"


if __name__ == "__main__":
    raise SystemExit(main())
