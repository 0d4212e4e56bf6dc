"""How fast is a tick on a big store? Import, first tick, incremental tick, memory, and the
same rules evaluated contact by contact for comparison.

Generates a store for the four shipped rules and the bench's own (bench/rules/: a three-step
journey, history conditions, an A/B test) in a fresh SQLite file or PostgreSQL database,
imports it through the same code the CLI uses, and prints each figure on its own line, with
the goals (which apply at 1M contacts / 5M events) marked PASS or MISS:

    python bench/tick.py                                      # 100k contacts, 500k events
    python bench/tick.py --contacts 1000000 --events 5000000  # the size the goals are for
    python bench/tick.py --database-url postgresql+psycopg://user@host:port/db   # on PostgreSQL

The clock is fixed (`NOW`), and every random choice comes from `--seed`, so two runs with the
same arguments build the same store and find the same messages.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import json
import os
import pickle
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import machine
from sqlalchemy import Row, create_engine, delete, func, insert, inspect, make_url, select, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from automator.engine import Engine, TickReport
from automator.importing import import_contacts, import_events, read_coupon_codes
from automator.lookup import trigger_hash
from automator.model import CONTACT_COLUMNS, Condition, DateTrigger, EventTrigger, HistoryCondition, Rule
from automator.project import Project, load_project
from automator.store import Store, coupons, rulestate, suppressions, table, windows
from automator.store import candidates as candidate_queries
from automator.store.candidates import Candidate
from automator.store.contacts import ids_by_email
from automator.tables import (
    Contact,
    ContactChange,
    ContactDate,
    Coupon,
    Event,
    Message,
    MessageContent,
    MessageHistory,
    RuleState,
    Suppression,
)
from automator.transports.file import FileTransport

REPO = Path(__file__).resolve().parent.parent
BENCH_RULES = Path(__file__).resolve().parent / "rules"  # beside the shipped ones
NOW = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # noon in Hanoi, night in New York
LATER = NOW + timedelta(hours=1)  # the incremental tick
HISTORY = timedelta(days=90)  # events are spread over the 90 days before NOW

GOAL_TICK_S = 10.0
GOAL_INCREMENTAL_S = 0.5
GOAL_RSS_MB = 300.0
GOAL_RATIO = 100.0
GOAL_POSTGRES_IMPORT = 50_000.0  # records/s, each file alone

CONTACTS = table(Contact)
EVENTS = table(Event)
DATES = table(ContactDate)
MESSAGES = table(Message)
CONTENTS = table(MessageContent)
HISTORIES = table(MessageHistory)
COUPONS = table(Coupon)
RULE_STATES = table(RuleState)
CHANGES = table(ContactChange)
SUPPRESSIONS = table(Suppression)

# One due occurrence, as both evaluators report it: (rule, contact, occurrence, occurred_at, suppressed).
Key = tuple[str, int, str, datetime, bool]
T = TypeVar("T")


# --- the store: contacts, events, suppressions, coupons -------------------------------------------

STAGES = {"awareness": 40, "consideration": 25, "conversion": 5, "retention": 20, "loyalty": 10}
ZONES_VI = ["Asia/Ho_Chi_Minh"] * 6 + [""]
ZONES_EN = [
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Singapore",
    "Australia/Sydney",
    "",
]
NAMES_VI = ["Lan", "Minh", "Hoa", "Tuấn", "Linh", "Hùng", "Mai", "Quang"]
NAMES_EN = ["Anna", "Ben", "Chloe", "David", "Emma", "Frank", "Grace", "Henry"]
SURNAMES_VI = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ"]
SURNAMES_EN = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Clark"]
PRODUCTS_VI = [
    ("Áo dài lụa", 1_250_000),
    ("Nón lá", 150_000),
    ("Cà phê Đà Lạt", 220_000),
    ("Túi cói", 380_000),
    ("Gốm Bát Tràng", 640_000),
]
PRODUCTS_EN = [
    ("Silk scarf", 39.0),
    ("Coffee beans", 14.5),
    ("Rattan bag", 52.0),
    ("Ceramic bowl", 27.25),
    ("Tea set", 68.0),
]
PLANS = ["basic", "pro", "team"]


def email_of(index: int) -> str:
    return f"contact{index}@bench.example.com"


def iso(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


@dataclass
class Population:
    """What event generation needs to know about the contacts: locale and trial, by index."""

    vietnamese: bytearray
    on_trial: bytearray

    @property
    def size(self) -> int:
        return len(self.vietnamese)


def write_contacts(path: Path, count: int, rng: random.Random) -> Population:
    """A CSV of contacts: stage, locale, zone, and the date attributes the date rules read."""
    people = Population(bytearray(count), bytearray(count))
    stages, weights = list(STAGES), list(STAGES.values())
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "email",
                "first_name",
                "last_name",
                "locale",
                "timezone",
                "stage",
                "plan",
                "trial_ends_at",
                "renews_at",
            ]
        )
        for index in range(count):
            vi = rng.random() < 0.6
            stage = rng.choices(stages, weights)[0]
            trial = stage in ("awareness", "consideration", "conversion") and rng.random() < 0.12
            paying = stage in ("retention", "loyalty")
            renews = paying and rng.random() < 0.7
            people.vietnamese[index], people.on_trial[index] = vi, trial
            out.writerow(
                [
                    email_of(index),
                    rng.choice(NAMES_VI if vi else NAMES_EN) if rng.random() < 0.9 else "",
                    rng.choice(SURNAMES_VI if vi else SURNAMES_EN),
                    "vi" if vi else "en",
                    rng.choice(ZONES_VI if vi else ZONES_EN),
                    stage,
                    rng.choice(PLANS) if paying else "",
                    iso(NOW + timedelta(seconds=rng.uniform(-14, 14) * 86400)) if trial else "",
                    (NOW.date() + timedelta(days=rng.randint(1, 365))).isoformat() if renews else "",
                ]
            )
    return people


@dataclass
class Cart:
    id: str
    contact: int
    items: list[dict[str, Any]]
    currency: str
    at: datetime

    @property
    def total(self) -> float:
        return sum(item["price"] * item["quantity"] for item in self.items)


@dataclass
class Shop:
    """Turns visits into events; numbers carts, orders and events, and remembers recent carts."""

    rng: random.Random
    people: Population
    events: int = 0
    carts: int = 0
    orders: int = 0
    recent: dict[str, Cart] = field(default_factory=dict)

    def event(self, type_: str, contact: int, at: datetime, properties: dict[str, Any]) -> dict[str, Any]:
        self.events += 1
        return {
            "id": f"e{self.events}",
            "type": type_,
            "email": email_of(contact),
            "at": iso(at),
            "properties": properties,
        }

    def visit(self, contact: int, at: datetime) -> Iterator[dict[str, Any]]:
        """Some page views, maybe a cart updated a few times, maybe an order after it."""
        rng = self.rng
        for _ in range(rng.randint(0, 2)):
            at += timedelta(seconds=rng.uniform(20, 300))
            yield self.event("page_viewed", contact, at, {"path": rng.choice(["/", "/sale", "/new"])})
        if self.people.on_trial[contact] and rng.random() < 0.05:
            yield self.event("subscription_started", contact, at, {"plan": rng.choice(PLANS)})
        if rng.random() < 0.8:
            cart = self.new_cart(contact, at)
            for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
                cart.at = at = at + timedelta(seconds=rng.uniform(30, 1200))
                yield self.cart_updated(cart)
            if rng.random() < 0.35:
                yield from self.order(cart, at + timedelta(seconds=rng.uniform(120, 10800)))

    def new_cart(self, contact: int, at: datetime) -> Cart:
        self.carts += 1
        vi = self.people.vietnamese[contact]
        return Cart(f"cart-{self.carts}", contact, [], "VND" if vi else "USD", at)

    def cart_updated(self, cart: Cart) -> dict[str, Any]:
        name, price = self.rng.choice(PRODUCTS_VI if cart.currency == "VND" else PRODUCTS_EN)
        line = next((item for item in cart.items if item["name"] == name), None)
        if line is None:
            cart.items.append({"name": name, "quantity": 1, "price": price})
        else:
            line["quantity"] += 1
        if cart.at >= NOW - timedelta(days=2):
            self.recent[cart.id] = cart
        return self.event(
            "cart_updated",
            cart.contact,
            cart.at,
            {
                "cart_id": cart.id,
                "items": [dict(item) for item in cart.items],
                "total": cart.total,
                "currency": cart.currency,
                "cart_url": f"https://shop.example.com/cart/{cart.id}",
            },
        )

    def order(self, cart: Cart, at: datetime) -> Iterator[dict[str, Any]]:
        """An order for the cart; now and then the shop reports the same order twice."""
        self.orders += 1
        properties = {
            "order_id": f"ORD-{self.orders}",
            "cart_id": cart.id,
            "total": cart.total,
            "currency": cart.currency,
            "items": cart.items,
        }
        yield self.event("order_placed", cart.contact, at, properties)
        if self.rng.random() < 0.03:
            yield self.event("order_placed", cart.contact, at, properties)


def pick_contact(rng: random.Random, count: int) -> int:
    """Some contacts are much more active than others."""
    return min(count - 1, int(count * rng.random() ** 1.6))


NOW_ISO, LATER_ISO = iso(NOW), iso(LATER)


def history_events(shop: Shop, count: int) -> Iterator[dict[str, Any]]:
    """`count` events from visits spread over the 90 days before NOW."""
    made = 0
    while True:
        start = NOW - HISTORY + timedelta(seconds=shop.rng.uniform(0, HISTORY.total_seconds()))
        for event in shop.visit(pick_contact(shop.rng, shop.people.size), start):
            if event["at"] > NOW_ISO:
                break
            yield event
            made += 1
            if made == count:
                return


def new_events(shop: Shop, count: int) -> Iterator[dict[str, Any]]:
    """What arrives between NOW and LATER: new visits, more updates of recent carts, and
    orders for them, some reported late enough to be due for a thank-you at once."""
    rng, made = shop.rng, 0
    recent = list(shop.recent.values()) or [shop.new_cart(0, NOW)]
    while made < count:
        roll = rng.random()
        if roll < 0.5:
            start = NOW - timedelta(hours=2) + timedelta(seconds=rng.uniform(0, 3 * 3600))
            batch = list(shop.visit(pick_contact(rng, shop.people.size), start))
        elif roll < 0.75:
            cart = rng.choice(recent)
            cart.at = max(cart.at, NOW - timedelta(hours=2)) + timedelta(seconds=rng.uniform(0, 3600))
            batch = [shop.cart_updated(cart)]
        else:
            cart = rng.choice(recent)
            at = NOW - timedelta(hours=25) + timedelta(seconds=rng.uniform(0, 26 * 3600))
            batch = list(shop.order(cart, max(at, cart.at + timedelta(minutes=2))))
        for event in batch:
            if event["at"] <= LATER_ISO and made < count:
                yield event
                made += 1


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_coupon_codes(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("code\n")
        handle.writelines(f"RENEW-{number:08d}\n" for number in range(count))


def suppress(store: Store, rng: random.Random, count: int) -> int:
    """About 2% of addresses unsubscribed, bounced or complained (as `automator suppressions add`)."""
    chosen = sorted(rng.sample(range(count), max(1, count // 50)))
    with store.session() as session:
        for index in chosen:
            suppressions.add(session, email_of(index), rng.choice(suppressions.REASONS[:3]), "", NOW)
    return len(chosen)


# --- the per-contact evaluator ---------------------------------------------------------------------


@dataclass
class ContactView:
    """Everything a per-contact tool loads about one contact before applying the rules."""

    id: int
    email: str
    stage: str | None
    row: dict[str, Any]
    suppressed: bool
    events: Sequence[Any]
    dates: dict[str, datetime]
    occurrences: set[tuple[str, str]]
    dated: set[tuple[str, datetime]]


def load_contact(session: Session, contact_id: int) -> ContactView | None:
    """One query per table, the way a tool that loops over contacts does it."""
    row = session.execute(select(CONTACTS).where(CONTACTS.c.id == contact_id)).mappings().first()
    if row is None:
        return None
    suppressed = session.execute(
        select(SUPPRESSIONS.c.email).where(SUPPRESSIONS.c.email == row["email"])
    ).first()
    events = session.execute(
        select(EVENTS.c.id, EVENTS.c.key, EVENTS.c.type, EVENTS.c.at, EVENTS.c.properties).where(
            EVENTS.c.contact_id == contact_id
        )
    ).all()
    dates = dict(
        session.execute(select(DATES.c.name, DATES.c.value).where(DATES.c.contact_id == contact_id)).all()
    )
    sent = session.execute(
        select(MESSAGES.c.rule_id, MESSAGES.c.occurrence, MESSAGES.c.occurred_at).where(
            MESSAGES.c.contact_id == contact_id
        )
    ).all()
    return ContactView(
        contact_id,
        row["email"],
        row["stage"],
        dict(row),
        suppressed is not None,
        events,
        dates,
        {(rule, occurrence) for rule, occurrence, _ in sent},
        {(rule, at) for rule, _, at in sent},
    )


def per_contact(rules: list[Rule], contact: ContactView, now: datetime) -> set[Key]:
    """The rules' semantics applied in Python to one contact's rows."""
    found: set[Key] = set()
    for rule in rules:
        if contact.stage not in rule.stages:
            continue
        if isinstance(rule.trigger, EventTrigger):
            found.update(_event_rule(rule, rule.trigger, contact, now))
        elif isinstance(rule.trigger, DateTrigger):
            found.update(_date_rule(rule, rule.trigger, contact, now))
        else:
            raise SystemExit(f"bench: rule {rule.id}: stage triggers are not benchmarked")
    return found


def _event_rule(rule: Rule, trigger: EventTrigger, contact: ContactView, now: datetime) -> Iterator[Key]:
    latest = now - trigger.delay
    earliest = latest - rule.lateness
    of_type = [event for event in contact.events if event.type == trigger.event]
    cancelling = rule.cancel_events  # cancel_if's and the goal's
    for event in of_type:
        if not earliest <= event.at <= latest:
            continue
        if not all(_holds(cond, contact, event.properties, now) for cond in rule.when):
            continue
        if any(other.type in cancelling and event.at < other.at <= now for other in contact.events):
            continue
        if trigger.latest_per and _superseded(event, of_type, trigger.latest_per, now):
            continue
        occurrence = event.key
        if trigger.once_per and event.properties.get(trigger.once_per) is not None:
            occurrence = str(event.properties[trigger.once_per])
        if (rule.id, occurrence) not in contact.occurrences:
            yield rule.id, contact.id, occurrence, event.at, contact.suppressed


def _superseded(event: Any, of_type: Sequence[Any], key: str, now: datetime) -> bool:
    value = event.properties.get(key)
    return value is not None and any(
        other.properties.get(key) == value
        and other.at <= now
        and (other.at > event.at or (other.at == event.at and other.id > event.id))
        for other in of_type
    )


def _date_rule(rule: Rule, trigger: DateTrigger, contact: ContactView, now: datetime) -> Iterator[Key]:
    value = contact.dates.get(trigger.attribute)
    latest = now - trigger.offset
    if value is None or not latest - rule.lateness <= value <= latest:
        return
    if not all(_holds(cond, contact, None, now) for cond in rule.when):
        return
    for cancel in trigger.cancel_if:
        # Cancelling events count from `within` before the date, else from when the trigger fires.
        since = value - cancel.within if cancel.within else value + trigger.offset
        if any(other.type == cancel.event and since <= other.at <= now for other in contact.events):
            return
    if (rule.id, value) not in contact.dated:
        yield rule.id, contact.id, f"{trigger.attribute}@{value.isoformat()}", value, contact.suppressed


def _holds(
    cond: Condition | HistoryCondition, contact: ContactView, properties: dict[str, Any] | None, now: datetime
) -> bool:
    """One condition, with SQL's NULL semantics (a missing value fails every comparison)."""
    if isinstance(cond, HistoryCondition):
        return _history_holds(cond, contact, now)
    row = contact.row
    if cond.scope == "contact":
        value = row[cond.name] if cond.name in CONTACT_COLUMNS else row["attributes"].get(cond.name)
    else:
        value = (properties or {}).get(cond.name)
    target = cond.value
    if cond.op == "exists":
        return (value is not None) == (target in (True, None))
    if cond.op == "eq":
        return value is None if target is None else value == target
    if cond.op == "ne":
        return value is not None if target is None else (value is None or value != target)
    if cond.op == "not_in":
        return value is None or value not in target
    if value is None:
        return False
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "in": lambda a, b: a in b,
    }
    return compare[cond.op](value, target)


def _history_holds(cond: HistoryCondition, contact: ContactView, now: datetime) -> bool:
    """How many of the contact's events of the type came by now (within the span), compared."""
    since = now - cond.within if cond.within is not None else None
    count = sum(
        1
        for event in contact.events
        if event.type == cond.event and event.at <= now and (since is None or event.at > since)
    )
    compare: dict[str, Callable[[int, int], bool]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return compare[cond.op](count, cond.count)


def evaluate_each(store: Store, rules: list[Rule], contact_ids: Iterable[int], now: datetime) -> set[Key]:
    found: set[Key] = set()
    with store.session() as session:
        for contact_id in contact_ids:
            contact = load_contact(session, contact_id)
            if contact is not None:
                found |= per_contact(rules, contact, now)
    return found


# --- set-wise ---------------------------------------------------------------------------------------


def setwise(store: Store, rules: list[Rule], now: datetime) -> dict[str, list[Candidate]]:
    """`candidates.find` for every rule with the watermark the engine would use."""
    found: dict[str, list[Candidate]] = {}
    for rule in rules:
        with store.session() as session:
            mark = rulestate.watermark(session, rule.id, trigger_hash(rule), windows.fresh_until(rule, now))
            found[rule.id] = candidate_queries.find(session, rule, now, mark)
    return found


@contextmanager
def sql_timer() -> Iterator[dict[str, float]]:
    """Seconds the engine spends in `candidates.batches` (its set-wise SQL), per rule: in
    the engine's lookup thread, beside the queueing of what was found before."""
    spent: dict[str, float] = {}
    original = candidate_queries.batches

    def batches(session: Session, rule: Rule, now: datetime, *rest: Any) -> Iterator[list[Candidate]]:
        found = original(session, rule, now, *rest)
        while True:
            started = time.perf_counter()
            try:
                batch = next(found, None)
            finally:
                spent[rule.id] = spent.get(rule.id, 0.0) + time.perf_counter() - started
            if batch is None:
                return
            yield batch

    candidate_queries.batches = batches  # type: ignore[assignment]
    try:
        yield spent
    finally:
        candidate_queries.batches = original  # type: ignore[assignment]


def key_of(rule_id: str, candidate: Candidate) -> Key:
    return rule_id, candidate.contact_id, candidate.occurrence, candidate.occurred_at, candidate.suppressed


def enqueued_at(store: Store, created: datetime, contact_ids: set[int]) -> set[Key]:
    """What a tick queued (or recorded as suppressed) at `created`, for some contacts."""
    with store.session() as session:
        rows = session.execute(
            select(
                MESSAGES.c.rule_id,
                MESSAGES.c.contact_id,
                MESSAGES.c.occurrence,
                MESSAGES.c.occurred_at,
                MESSAGES.c.status,
            ).where(MESSAGES.c.created_at == created)
        ).all()
    return {
        (rule, contact, occurrence, at, status == "suppressed")
        for rule, contact, occurrence, at, status in rows
        if contact in contact_ids
    }


# --- reporting ----------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def say_rate(what: str, records: int, seconds: Timing, goal_rate: float | None = None) -> None:
    rate = records / seconds.wall
    judged = "" if goal_rate is None else " " + goal(rate >= goal_rate, f">= {goal_rate:,.0f} records/s")
    say(f"{what}: {rate:,.0f} records/s ({records:,} in {seconds}){judged}")


def goal(met: bool, text: str) -> str:
    return f"[goal {text}: {'PASS' if met else 'MISS'}]"


class TreeMemory:
    """Peak resident memory of this process and of every process it started (the render
    workers, multiprocessing's resource tracker, an import's reading process): each
    process's own peak (VmHWM), read from /proc by a thread every SAMPLE_S seconds and at
    every report while the process lives.

    The tree's figure is, at the look where it was most, this process's peak so far and the
    peaks of the children alive then, added up. The peaks need not have come at the same
    moment: an upper bound of what the tree held at once. Processes that never lived at the
    same time (an import's reading process, ended before the render workers start) are not
    added up, nor is this process's peak in a tick added to a reading process's. A child
    that ended between two looks is counted at its last look; getrusage(RUSAGE_CHILDREN)
    gives the largest ended child's peak, which the report shows too as a check."""

    SAMPLE_S = 0.2

    def __init__(self) -> None:
        self._peaks: dict[int, float] = {}  # child pid -> its peak, MB
        self._together = 0.0  # the most the children alive at one look held at their peaks, MB
        self._tree = 0.0  # the most this process's peak and theirs came to at one look, MB
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-memory", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.SAMPLE_S):
            self.look()

    def look(self) -> None:
        alive = 0.0
        for pid in _descendants(os.getpid()):
            peak = _peak_mb(pid)
            if peak is not None:
                with self._lock:
                    self._peaks[pid] = max(self._peaks.get(pid, 0.0), peak)
                    alive += self._peaks[pid]
        with self._lock:
            self._together = max(self._together, alive)
            self._tree = max(self._tree, self.main_mb() + alive)

    def main_mb(self) -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

    def children_mb(self) -> tuple[float, int]:
        self.look()
        with self._lock:
            return self._together, len(self._peaks)

    def tree_mb(self) -> float:
        self.look()
        with self._lock:
            return self._tree

    def report(self) -> str:
        children, count = self.children_mb()
        ended = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return (
            f"main process {self.main_mb():,.0f} MB, {count} child process(es) {children:,.0f} MB at once "
            f"(largest ended child {ended:,.0f} MB), whole tree <= {self.tree_mb():,.0f} MB"
        )


def _descendants(root: int) -> list[int]:
    """Every living process below `root`, from each process's parent in /proc/PID/stat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])  # after "(comm)"
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _peak_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def agreement(what: str, setwise_keys: set[Key], each_keys: set[Key], contacts: int) -> bool:
    only_setwise, only_each = setwise_keys - each_keys, each_keys - setwise_keys
    same = not only_setwise and not only_each
    by_rule = Counter(key[0] for key in setwise_keys & each_keys)
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(by_rule.items()))
    say(
        f"agreement {what}: {'AGREE' if same else 'DISAGREE'} on {contacts:,} contacts: "
        f"{len(setwise_keys & each_keys):,} due in both ({rules}), "
        f"{len(only_setwise)} only set-wise, {len(only_each)} only per-contact"
    )
    for key in sorted(only_setwise, key=str)[:5]:
        say(f"  only set-wise: {key}")
    for key in sorted(only_each, key=str)[:5]:
        say(f"  only per-contact: {key}")
    return same


class Profiler:
    """cProfile around chosen phases when `--profile DIR` is given; a no-op otherwise."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory:
            directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.directory is None:
            yield
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            profile.dump_stats(self.directory / f"{name}.prof")


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of a phase; on a busy machine the wall time exceeds the CPU time.
    `machine` is the CPU time the whole machine spent meanwhile (the render workers', a
    server's on this machine, anything else running), when /proc tells it: a phase that
    keeps every core busy takes that divided by the cores at least."""

    wall: float
    cpu: float
    machine: float | None = None

    def __str__(self) -> str:
        machine = "" if self.machine is None else f"; the machine's {self.machine:.2f} s"
        return f"{self.wall:.2f} s (CPU {self.cpu:.2f} s{machine})"


def timed(action: Callable[[], T]) -> tuple[T, Timing]:
    started, cpu, busy = time.perf_counter(), time.process_time(), machine_busy()
    result = action()
    wall, cpu, after = time.perf_counter() - started, time.process_time() - cpu, machine_busy()
    return result, Timing(wall, cpu, None if busy is None or after is None else after - busy)


def machine_busy() -> float | None:
    """CPU seconds all the machine's cores have been busy since it started, from /proc/stat
    (user, system and interrupts; not idle, waiting on a disk, or taken by the hypervisor
    for other machines); None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# --- the run ------------------------------------------------------------------------------------------


def write_project(work: Path) -> Path:
    """The shipped project with the bench's rules beside the shipped ones, copied into
    `work/project`; its folder."""
    folder = work / "project"
    shutil.copytree(REPO / "rules", folder / "rules")
    shutil.copytree(REPO / "email_templates", folder / "email_templates")
    shutil.copy(REPO / "automator.toml", folder / "automator.toml")
    for rule in BENCH_RULES.glob("*.yaml"):
        shutil.copy(rule, folder / "rules" / rule.name)
    return folder


def open_project(work: Path, db: Database | Path, outbox: Path) -> tuple[Project, Store]:
    """The bench's project (`write_project`) in `work`, on the database `db` (a path is a
    SQLite file's, as bench/simulate.py passes it)."""
    folder = write_project(work)
    url = (SqliteFile(db) if isinstance(db, Path) else db).url
    environ = {"AUTOMATOR_DATABASE_URL": url, "AUTOMATOR_OUTBOX": str(outbox)}
    project = load_project(folder, environ)
    if project.errors:
        raise SystemExit("bench: the project does not load:\n" + "\n".join(map(str, project.errors)))
    return project, project.open_store()


Built = tuple[int, int, int]  # the store's contacts, events and seed


class Database(Protocol):
    """Where the bench's store lives, made afresh for the run: a SQLite file or a PostgreSQL
    database. `--store` keeps a copy of it for later runs (and the generator's state beside)."""

    @property
    def url(self) -> str: ...

    @property
    def import_goal(self) -> float | None:
        """Records/s the store's import should reach, if the goals name one."""
        ...

    def describe(self) -> str:
        """The database and its version, for the run's first lines."""
        ...

    def megabytes(self, store: Store) -> float: ...

    def settle(self, store: Store) -> None:
        """What the database would do by itself a while after a bulk load, done at once."""
        ...

    def save(self, store: Store, folder: Path, built: Built) -> str:
        """Keep a copy of the store for later runs; where it went."""
        ...

    def restore(self, store: Store, folder: Path, built: Built) -> str:
        """Replace the store with the copy `save` kept; where it came from."""
        ...

    def remove(self) -> None: ...


@dataclass(frozen=True)
class SqliteFile:
    """A new SQLite file, copied to and from `bench.db` in the --store folder."""

    path: Path
    import_goal = None  # bench/import.py judges the CLI's import on SQLite

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def __str__(self) -> str:
        return str(self.path)

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}, db {self.path}"

    def megabytes(self, store: Store) -> float:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*")) / 1e6

    def settle(self, store: Store) -> None:
        pass  # SQLite gathers no statistics by itself, and automator asks for none

    def save(self, store: Store, folder: Path, built: Built) -> str:
        store.dispose()
        with sqlite3.connect(self.path) as source, sqlite3.connect(folder / "bench.db") as target:
            source.backup(target)
        return str(folder)

    def restore(self, store: Store, folder: Path, built: Built) -> str:
        saved = folder / "bench.db"
        if not saved.exists():
            raise SystemExit(f"bench: {folder} holds no SQLite store (bench.db); pass another --store")
        store.dispose()
        for stale in self.path.parent.glob(self.path.name + "-*"):
            stale.unlink()
        shutil.copyfile(saved, self.path)
        return str(saved)

    def remove(self) -> None:
        for path in self.path.parent.glob(self.path.name + "*"):
            path.unlink()


class PostgresDatabase:
    """A database of the bench's own on a PostgreSQL server whose user may create databases
    (the URL's database is only where it connects to make it): made empty at the start,
    dropped at the end. --store keeps a copy on the server, `automator_bench_saved_…`, and
    each later run makes its database from it (CREATE DATABASE … TEMPLATE, a file copy).

    The server's processes are not the bench's: their memory is not in its process tree."""

    NAME = "automator_bench_tick"
    import_goal = GOAL_POSTGRES_IMPORT

    def __init__(self, server_url: str) -> None:
        self.server = make_url(server_url)
        self.admin = create_engine(self.server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.name = self.NAME
        self.url = self.server.set(database=self.name).render_as_string(hide_password=False)
        self._recreate(self.name)

    def __str__(self) -> str:
        return f"database {self.name} on {self.server.host}:{self.server.port or 5432}"

    def describe(self) -> str:
        with self.admin.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar_one()
        return f"PostgreSQL {version}, {self}"

    def megabytes(self, store: Store) -> float:
        with store.session() as session:
            size: int = session.execute(select(func.pg_database_size(func.current_database()))).scalar_one()
        return size / 1e6

    def settle(self, store: Store) -> None:
        """Gather the planner's statistics and mark the loaded pages all-visible, as autovacuum
        does within a minute or two of a load: the ticks' plans should not depend on whether
        it has come by yet. A store copied from --store has them already.

        Only the tables the load filled: autovacuum leaves a table nothing was written to
        unanalyzed, and the planner then prices it as at least ten pages. The message table
        analyzed while empty is priced by its pages at the time instead: the first tick's
        foreign-key checks (of each content and history row on its message) are planned
        while it holds a few, as a scan of the table, and that plan is kept on the
        connection until the table is analyzed again, so each row scanned the whole
        growing table (about half of that tick's time at full size)."""
        started = time.perf_counter()
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            quote = connection.dialect.identifier_preparer.quote
            tables = [quote(name) for name in inspect(connection).get_table_names()]
            loaded = [
                name
                for name in tables
                if connection.execute(text(f"SELECT EXISTS (SELECT FROM {name})")).scalar()
            ]
            connection.execute(text(f"VACUUM ANALYZE {', '.join(loaded)}"))
        say(
            f"VACUUM ANALYZE of the {len(loaded)} tables the import filled (as autovacuum would): "
            f"{time.perf_counter() - started:.2f} s"
        )

    def save(self, store: Store, folder: Path, built: Built) -> str:
        store.dispose()  # a template has no other session
        self._recreate(saved_database(built), template=self.name)
        return f"{folder} and database {saved_database(built)}"

    def restore(self, store: Store, folder: Path, built: Built) -> str:
        saved = saved_database(built)
        with self.admin.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": saved}
            )
            if found.first() is None:
                raise SystemExit(
                    f"bench: {folder} was saved with a database {saved} that {self.server.host} does "
                    "not hold; pass another --store"
                )
        store.dispose()
        self._recreate(self.name, template=saved)
        return f"database {saved}"

    def remove(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def _recreate(self, name: str, template: str | None = None) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))


def saved_database(built: Built) -> str:
    contacts, events, seed = built
    return f"automator_bench_saved_{contacts}_{events}_{seed}"


def build_store(
    args: argparse.Namespace,
    work: Path,
    project: Project,
    store: Store,
    rng: random.Random,
    database: Database,
) -> Shop:
    """Generate the files, import them the way the CLI does, and print the import rates."""
    people, contacts_written = timed(lambda: write_contacts(work / "contacts.csv", args.contacts, rng))
    shop = Shop(rng, people)
    _, events_written = timed(lambda: write_jsonl(work / "events.jsonl", history_events(shop, args.events)))
    write_coupon_codes(work / "renewal.csv", max(1000, args.contacts // 50))
    say(
        f"generated files: {contacts_written.wall + events_written.wall:.1f} s "
        f"({shop.carts:,} carts, {shop.orders:,} orders)"
    )

    zone, journey = project.settings.zone, project.journey
    report, seconds = timed(lambda: import_contacts(store, work / "contacts.csv", journey, zone, NOW))
    assert not report.errors, report.errors[:3]
    say_rate("import contacts", report.imported, seconds, database.import_goal)
    report, seconds = timed(lambda: import_events(store, work / "events.jsonl", journey, NOW))
    assert not report.errors, report.errors[:3]
    say_rate("import events", report.imported, seconds, database.import_goal)

    codes, errors = read_coupon_codes(work / "renewal.csv")
    assert not errors
    with store.session() as session:
        pooled = coupons.import_pool(session, "renewal", codes, 15, NOW + timedelta(days=120), NOW)
    say(
        f"store: {pooled:,} renewal coupons, {suppress(store, rng, args.contacts):,} suppressed addresses, "
        f"{database.megabytes(store):,.0f} MB on disk"
    )
    database.settle(store)
    return shop


def saved_store(
    args: argparse.Namespace,
    work: Path,
    project: Project,
    store: Store,
    rng: random.Random,
    db: Database | Path,
) -> tuple[Shop, random.Random]:
    """Build the store, or copy the one an earlier run with the same arguments saved in --store
    (`db` a SQLite file, as bench/simulate.py passes it, or where the store is)."""
    database = SqliteFile(db) if isinstance(db, Path) else db
    if args.store is None:
        return build_store(args, work, project, store, rng, database), rng
    state = args.store / "state.pickle"
    wanted = (args.contacts, args.events, args.seed)
    if state.exists():
        with state.open("rb") as handle:
            built, shop, rng = pickle.load(handle)
        if built != wanted:
            raise SystemExit(f"bench: {args.store} holds a store for {built}, not {wanted}")
        saved = database.restore(store, args.store, wanted)
        store.upgrade_schema()  # a store saved by an older automator is brought up to date
        say(f"store copied from {saved} ({database.megabytes(store):,.0f} MB on disk)")
        return shop, rng
    shop = build_store(args, work, project, store, rng, database)
    args.store.mkdir(parents=True, exist_ok=True)
    where = database.save(store, args.store, wanted)
    with state.open("wb") as handle:
        pickle.dump((wanted, shop, rng), handle)
    say(f"store saved in {where} for the next run")
    return shop, rng


def sample_ids(store: Store, rng: random.Random, population: int, size: int) -> list[int]:
    chosen = sorted(rng.sample(range(population), min(size, population)))
    with store.session() as session:
        ids = ids_by_email(session, [email_of(index) for index in chosen])
    return sorted(ids.values())


@dataclass
class FirstTick:
    tick: Timing  # Engine.evaluate on the fresh store
    sql: Timing  # candidates.find for every rule, alone
    each: Timing  # the per-contact evaluation, extrapolated to the whole store
    sample: list[int]


def first_tick(
    args: argparse.Namespace,
    project: Project,
    store: Store,
    engine: Engine,
    rng: random.Random,
    profiler: Profiler,
    memory: TreeMemory,
) -> FirstTick:
    """Set-wise SQL alone, the per-contact sample, then the timed first tick (and dispatch)."""
    rules = project.rules
    found, sql = timed(lambda: setwise(store, rules, NOW))
    say(
        f"set-wise candidate SQL (candidates.find, all rules): {sql}, "
        f"{sum(map(len, found.values())):,} candidates"
    )

    sample = sample_ids(store, rng, args.contacts, args.sample)
    each, sampled = timed(lambda: evaluate_each(store, rules, sample, NOW))
    scale = args.contacts / len(sample)
    extrapolated = Timing(sampled.wall * scale, sampled.cpu * scale)
    say(
        f"per-contact evaluation: {sampled.wall / len(sample) * 1000:.3f} ms/contact on {len(sample):,} "
        f"sampled contacts ({sampled}) -> {extrapolated} extrapolated to {args.contacts:,}"
    )

    # Random contacts are rarely due, so also check contacts the SQL found (up to 200 per rule).
    due_contacts = set()
    for rule_found in found.values():
        ids = sorted({candidate.contact_id for candidate in rule_found})
        due_contacts.update(rng.sample(ids, min(200, len(ids))))
    extra = sorted(due_contacts - set(sample))
    each |= evaluate_each(store, rules, extra, NOW)
    checked = set(sample) | set(extra)
    setwise_keys = {
        key_of(rule_id, candidate)
        for rule_id, rule_found in found.items()
        for candidate in rule_found
        if candidate.contact_id in checked
    }
    agreement("first tick, per-contact vs candidates.find", setwise_keys, each, len(checked))

    report = TickReport(NOW)
    # As `automator run` does when it starts: the workers start up while the tick goes on.
    engine.render_pool.warm()
    with profiler.phase("first_tick"), sql_timer() as in_sql:
        _, tick = timed(lambda: engine.evaluate(NOW, report))
    say(f"first tick (Engine.evaluate): {tick} {goal(tick.wall <= GOAL_TICK_S, f'<= {GOAL_TICK_S:g} s')}")
    print_rules(report, tick, in_sql)
    agreement("first tick, per-contact vs enqueued", enqueued_at(store, NOW, checked), each, len(checked))
    say(f"peak RSS after first tick: {memory.report()}")
    if not args.no_dispatch:
        dispatch(engine, report, profiler, memory)
    return FirstTick(tick, sql, extrapolated, sample)


def dispatch(engine: Engine, report: TickReport, profiler: Profiler, memory: TreeMemory) -> None:
    with profiler.phase("dispatch"):
        _, seconds = timed(lambda: asyncio.run(engine.dispatcher().run(NOW, report)))
    sent = sum(rule.sent for rule in report.rules.values())
    say(f"dispatch (Dispatcher.run, file transport): {seconds}, {sent:,} sent ({sent / seconds.wall:,.0f}/s)")
    for rule in report.rules.values():
        say(f"  {rule.rule_id}: {rule.sent:,} sent; {dict(rule.outcomes)}")
    say(f"peak RSS after dispatch: {memory.report()}")


def print_rules(report: TickReport, seconds: Timing, in_sql: dict[str, float]) -> None:
    for rule in report.rules.values():
        other = f"; {dict(rule.outcomes)}" if rule.outcomes else ""
        error = f"; ERROR {rule.error}" if rule.error else ""
        say(
            f"  {rule.rule_id}: {rule.enqueued:,} enqueued of {rule.evaluated:,} found "
            f"(SQL {in_sql.get(rule.rule_id, 0.0):.3f} s){other}{error}"
        )
    sql = sum(in_sql.values())
    queued = sum(rule.enqueued for rule in report.rules.values())
    say(
        f"  set-wise SQL {sql:.2f} s in all (beside the queueing of what was found before); "
        f"{seconds.wall / max(queued, 1) * 1000:.2f} ms per queued message, all in"
    )


def incremental_tick(
    args: argparse.Namespace,
    work: Path,
    project: Project,
    store: Store,
    engine: Engine,
    shop: Shop,
    sample: list[int],
    profiler: Profiler,
    memory: TreeMemory,
) -> Timing:
    """New events arrive through the import, then a tick an hour later."""
    path = work / "new_events.jsonl"
    write_jsonl(path, new_events(shop, args.new_events))
    with path.open(encoding="utf-8") as lines:
        touched_emails = sorted({json.loads(line)["email"] for line in lines})
    report, seconds = timed(lambda: import_events(store, path, project.journey, LATER))
    say_rate("import new events", report.imported, seconds)

    with store.session() as session:
        touched = sorted(ids_by_email(session, touched_emails).values())[:1000]
    checked = set(sample) | set(touched)
    each = evaluate_each(store, project.rules, sorted(checked), LATER)

    with store.session() as session:
        marks = session.execute(select(RULE_STATES)).all()
        logged = session.execute(select(CHANGES)).all()
    runs: list[tuple[Timing, TickReport, dict[str, float]]] = []
    for run in range(args.incremental_runs):
        if run:
            undo_tick(store, LATER, marks, logged)
        tick = TickReport(LATER)
        with profiler.phase(f"incremental_tick_{run + 1}"), sql_timer() as in_sql:
            _, seconds = timed(lambda: engine.evaluate(LATER, tick))  # noqa: B023 (called at once)
        runs.append((seconds, tick, dict(in_sql)))
    seconds, tick, in_sql = sorted(runs, key=lambda run: run[0].wall)[len(runs) // 2]
    walls = ", ".join(f"{timing.wall:.2f}" for timing, _, _ in runs)
    say(
        f"incremental tick (Engine.evaluate at now + 1h): {seconds}, the median of {len(runs)} "
        f"({walls} s; each undone before the next) "
        f"{goal(seconds.wall <= GOAL_INCREMENTAL_S, f'<= {GOAL_INCREMENTAL_S:g} s')}"
    )
    print_rules(tick, seconds, in_sql)
    enqueued = enqueued_at(store, LATER, checked)
    agreement("incremental tick, per-contact vs enqueued", enqueued, each, len(checked))
    say(f"peak RSS after incremental tick: {memory.report()}")
    return seconds


def undo_tick(store: Store, created: datetime, marks: Sequence[Row[Any]], logged: Sequence[Row[Any]]) -> None:
    """Remove what a tick at `created` queued (its messages with their content, history and
    coupons: pool codes go back to their pool, generated codes go) and put the rules'
    watermarks and the contact change log back, so that the same tick can run again."""
    queued = select(MESSAGES.c.id).where(MESSAGES.c.created_at == created)
    with store.session() as session:
        coupons.return_to_pool(session, list(session.execute(queued).scalars()))
        session.execute(delete(CONTENTS).where(CONTENTS.c.message_id.in_(queued)))
        session.execute(delete(HISTORIES).where(HISTORIES.c.message_id.in_(queued)))
        session.execute(delete(COUPONS).where(COUPONS.c.pool.is_(None), COUPONS.c.message_id.in_(queued)))
        session.execute(delete(MESSAGES).where(MESSAGES.c.id.in_(queued)))
        for kept, rows in ((RULE_STATES, marks), (CHANGES, logged)):
            session.execute(delete(kept))
            if rows:
                session.execute(insert(kept), [dict(row._mapping) for row in rows])


def compare(first: FirstTick) -> None:
    ratio = first.each.wall / first.sql.wall
    say(
        f"speed ratio set-wise vs per-contact (candidate selection): {ratio:,.0f}x "
        f"(CPU {first.each.cpu / first.sql.cpu:,.0f}x) {goal(ratio >= GOAL_RATIO, f'>= {GOAL_RATIO:g}x')}"
    )
    whole = (first.each.wall + first.tick.wall - first.sql.wall) / first.tick.wall
    say(f"speed ratio whole first tick vs per-contact selection + the same enqueueing: {whole:,.1f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", type=Path, help="SQLite file to create (default: a temporary one)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (postgresql+psycopg://user@host:port/db) whose user may create "
        f"databases: the bench works in a database of its own there, {PostgresDatabase.NAME}",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="on a throw-away PostgreSQL server, started as tests/postgres.py does",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and generated files")
    parser.add_argument(
        "--store",
        type=Path,
        help="folder keeping the imported store: saved there on the first run, copied from there later "
        "(on PostgreSQL the copy is a database on the server, beside the bench's)",
    )
    parser.add_argument("--sample", type=int, default=2000, help="contacts evaluated one by one")
    parser.add_argument("--new-events", type=int, default=10_000, help="events before the incremental tick")
    parser.add_argument(
        "--incremental-runs",
        type=int,
        default=5,
        help="times the incremental tick runs, undone in between; the median is reported",
    )
    parser.add_argument("--no-dispatch", action="store_true", help="skip timing the delivery")
    parser.add_argument(
        "--outbox",
        type=Path,
        help="folder the dispatch's outbox is made in (default: the bench's temporary folder); "
        "/dev/shm keeps the cost of creating its files out of the dispatch's time",
    )
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the ticks to this folder")
    args = parser.parse_args(argv)
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url names a PostgreSQL server (--db chooses the SQLite file)")
    if args.postgres and args.database_url:
        parser.error("--postgres starts a server of its own: not with --database-url")
    if (args.postgres or args.database_url) and args.db:
        parser.error("--db is a SQLite file: not with --postgres or --database-url")
    if args.postgres and args.store:
        parser.error("--store keeps the store on the server: a throw-away server keeps nothing")
    if args.outbox and not args.outbox.is_dir():
        parser.error(f"--outbox {args.outbox}: no such folder (the bench makes its outbox inside it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.postgres:
        from dispatch import postgres  # tests/postgres.py's throw-away server, stopped at the end

        with postgres(args) as (server, _):
            return bench(args, server)
    return bench(args, args.database_url)


def bench(args: argparse.Namespace, server: str | None) -> int:
    """The bench on a new SQLite file, or on a new database of the PostgreSQL `server`."""
    work = Path(tempfile.mkdtemp(prefix="automator-bench-"))
    if server is None:
        db = args.db.resolve() if args.db else work / "bench.db"
        if db.exists():
            raise SystemExit(f"bench: {db} exists; remove it or pass another --db")
        database: Database = SqliteFile(db)
    else:
        database = PostgresDatabase(server)
    rng = random.Random(args.seed)
    say(machine.describe())
    say(
        f"bench: {args.contacts:,} contacts, {args.events:,} events, seed {args.seed}, "
        f"now {NOW.isoformat()}, {database.describe()}"
    )
    outbox = (
        Path(tempfile.mkdtemp(prefix="automator-bench-outbox-", dir=args.outbox))
        if args.outbox
        else work / "outbox"
    )
    project, store = open_project(work, database, outbox)
    engine = Engine(project, store, FileTransport(outbox))
    profiler = Profiler(args.profile)
    memory = TreeMemory()
    started = time.perf_counter()
    try:
        shop, rng = saved_store(args, work, project, store, rng, database)
        say(f"peak RSS after import: {memory.report()}")
        first = first_tick(args, project, store, engine, rng, profiler, memory)
        incremental_tick(args, work, project, store, engine, shop, first.sample, profiler, memory)
        compare(first)
        tree = memory.tree_mb()
        say(f"peak RSS: {memory.report()} {goal(tree <= GOAL_RSS_MB, f'whole tree <= {GOAL_RSS_MB:g} MB')}")
        if (args.contacts, args.events) != (1_000_000, 5_000_000):
            say("(the goals are for --contacts 1000000 --events 5000000)")
        say(f"total bench time: {time.perf_counter() - started:,.0f} s")
    finally:
        engine.close()
        memory.close()
        store.dispose()
        if args.keep:
            say(f"kept: {database} and {work}" + (f", outbox {outbox}" if args.outbox else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if args.outbox:
                shutil.rmtree(outbox, ignore_errors=True)
            database.remove()
    return 0


def _as_a_daemon_main() -> None:
    """The render workers are started with `spawn`, and each imports the parent's main
    module again: a daemon's is the small `automator` script, the bench's is this module,
    which imports SQLAlchemy and the engine (about 30 MB more in every worker). So that the
    workers' memory is a daemon's, `__main__` becomes a module without a file holding this
    one's names (the pickled store state names its classes by `__main__`): `spawn` imports
    nothing for such a main module."""
    light = types.ModuleType("__main__")
    light.__dict__.update({name: value for name, value in globals().items() if not name.startswith("__")})
    sys.modules["__main__"] = light


if __name__ == "__main__":
    _as_a_daemon_main()
    sys.exit(main())
