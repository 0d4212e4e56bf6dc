"""Four weeks of Lotus Shop, replayed hour by hour: the four shipped flows on example data.

Run from the repository root with `make demo`. It starts from a clean slate, checks the
rules, imports examples/contacts.csv and the renewal coupon pool, then walks the clock hour by
hour from 2 to 29 November 2026. Before each tick it imports the events of the hour that just
passed, as a shop would send them: events move contacts along the journey when they are
imported, so importing them all up front would put every contact in its final stage on day
one. It ends with what each rule did per day, and commands to try next.

Everything runs in this process: the one-off commands through the real CLI, the hourly
imports and ticks through the functions behind `automator events import` and
`automator tick --now T --json`, so the project is loaded once instead of once per tick.

`--database-url URL` runs it on another database, e.g. an empty PostgreSQL one
(`python examples/demo.py --database-url postgresql+psycopg://…`): the demo refuses a database
that holds contacts, events or messages already, and never empties one.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from automator.cli import app, make_transport
from automator.engine import Engine
from automator.importing import import_events, parse_timestamp
from automator.project import Project, load_project
from automator.store import Store

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = Path("examples")
START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 28
TICK = timedelta(hours=1)
POOL_EXPIRES = "2026-12-31T12:00:00Z"  # 31 December in Hanoi, London and New York alike
UNSUBSCRIBES = (date(2026, 11, 16), "hoa.tran@example.com")
LAN = "lan@example.com"  # the README tour follows her abandoned cart
COLUMNS = ("queued", "sent", "cancelled", "held", "suppressed")
LETTERS = dict(zip(COLUMNS, "qschx", strict=True))

RUNNER = CliRunner()


def main() -> None:
    options = parse_options()
    started = time.monotonic()
    os.chdir(REPO)
    isolate_from_environment()
    clean_slate(options.database_url)
    automator("check")
    automator("contacts", "import", str(EXAMPLES / "contacts.csv"), "--now", START.isoformat())
    automator(
        "coupons", "import", "renewal", str(EXAMPLES / "renewal_coupons.csv"),
        "--percent-off", "15", "--expires", POOL_EXPIRES,
    )  # fmt: skip
    project = load_project(Path("."))
    store = project.open_store()
    engine = Engine(project, store, make_transport(project))
    with tempfile.TemporaryDirectory(prefix="automator-demo-") as folder:
        feed = hourly_feed(EXAMPLES / "events.jsonl", Path(folder))
        per_day, outcomes = walk(project, store, engine, feed)
    print_table(per_day, [rule.id for rule in project.rules])
    print_totals(per_day)
    print_notes(outcomes)
    print_try_next()
    print(f"\nDone in {time.monotonic() - started:.1f} s.")


def isolate_from_environment() -> None:
    """The demo writes its own automator.db and outbox/: never a real database or SMTP server."""
    ignored = sorted(name for name in os.environ if name.startswith("AUTOMATOR_"))
    for name in ignored:
        del os.environ[name]
    if ignored:
        print(f"Ignoring {', '.join(ignored)} for the demo.")


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Four weeks of Lotus Shop, replayed hour by hour.")
    parser.add_argument(
        "--database-url",
        help="an empty database to run on instead of ./automator.db (e.g. postgresql+psycopg://…)",
    )
    return parser.parse_args()


def clean_slate(database_url: str | None) -> None:
    """Remove what an earlier run left: the SQLite file and the outbox. Another database is
    only used, never emptied: it must hold no contacts, events or messages yet."""
    if database_url is not None:
        os.environ["AUTOMATOR_DATABASE_URL"] = database_url
        refuse_if_used(database_url)
    removed = [] if database_url else [path.name for path in sorted(Path(".").glob("automator.db*"))]
    for name in removed:
        Path(name).unlink()
    if Path("outbox").exists():
        shutil.rmtree("outbox")
        removed.append("outbox/")
    print(f"Clean slate: removed {', '.join(removed)}." if removed else "Clean slate: nothing to remove.")


def refuse_if_used(database_url: str) -> None:
    from sqlalchemy import create_engine, inspect, text

    from automator.display import hide_password

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            used = [
                name
                for name in ("contact", "event", "message")
                if name in tables and connection.execute(text(f"SELECT 1 FROM {name} LIMIT 1")).first()
            ]
    finally:
        engine.dispose()
    if used:
        sys.exit(
            f"demo stopped: {hide_password(database_url)} already holds {', '.join(used)} rows; "
            "the demo needs an empty database (e.g. a new one from `createdb`)"
        )


def automator(*args: str, show: bool = True) -> str:
    """Run one `automator` command in this process, printed like a terminal session."""
    result = RUNNER.invoke(app, list(args), catch_exceptions=False)
    if show:
        print(f"\n$ {command()} {shlex.join(args)}")
        print("\n".join(f"  {line}" for line in result.output.rstrip().splitlines()))
    if result.exit_code != 0:
        sys.exit(f"demo stopped: `automator {shlex.join(args)}` exited with {result.exit_code}")
    return result.stdout


def command() -> str:
    """How to call automator from here: the script next to this Python, e.g. .venv/bin/automator."""
    script = Path(sys.executable).parent / "automator"
    return shown(script) if script.exists() else "automator"


def shown(path: Path) -> str:
    """A path as typed from here: relative when it is under the current folder."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def hourly_feed(events: Path, folder: Path) -> dict[datetime, Path]:
    """Split the events by the tick that first sees them: (T - 1h, T] is imported before T."""
    batches: dict[datetime, list[str]] = defaultdict(list)
    for line in events.read_text(encoding="utf-8").splitlines():
        if line.strip():
            at = parse_timestamp(json.loads(line)["at"])
            hour = at.replace(minute=0, second=0, microsecond=0)
            batches[hour if hour == at else hour + TICK].append(line)
    feed = {}
    for hour, lines in sorted(batches.items()):
        feed[hour] = folder / f"{hour:%Y-%m-%dT%H}.jsonl"
        feed[hour].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return feed


def walk(
    project: Project, store: Store, engine: Engine, feed: dict[datetime, Path]
) -> tuple[dict[date, dict[str, Counter[str]]], dict[str, Counter[str]]]:
    """Tick every hour of every day; returns per day and rule counts, and every outcome seen."""
    print(
        f"\nWalking the clock from {START:%a %d %b %Y} for {DAYS} days (UTC). Every hour: import the"
        " events of the past hour (`automator events import`), then `automator tick --now T --json`."
    )
    per_day: dict[date, dict[str, Counter[str]]] = {}
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for offset in range(DAYS):
        day = (START + timedelta(days=offset)).date()
        if day == UNSUBSCRIBES[0]:
            at = (START + timedelta(days=offset, hours=9)).isoformat()
            automator("suppressions", "add", UNSUBSCRIBES[1], "--reason", "unsubscribed", "--now", at)
            print()
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        imported = 0
        for hour in range(24):
            now = START + timedelta(days=offset, hours=hour)
            if now in feed:
                imported += import_hour(project, store, feed[now], now)
            for rule in tick(engine, now)["rules"]:
                counts[rule["rule"]].update(tally(rule))
                outcomes[rule["rule"]].update(rule["skipped"])
        per_day[day] = counts
        total = sum(counts.values(), Counter())
        summary = ", ".join(f"{total[column]} {column}" for column in COLUMNS if total[column])
        print(f"  {day:%a %d %b}  {imported:3} events imported  {summary or '-'}")
    return per_day, outcomes


def import_hour(project: Project, store: Store, path: Path, now: datetime) -> int:
    """`automator events import PATH`, received at `now`."""
    report = import_events(store, path, project.journey, now)
    if report.errors:
        sys.exit(f"demo stopped: {path.name}: {report.errors[0]}")
    return report.imported


def tick(engine: Engine, now: datetime) -> dict[str, Any]:
    """What `automator tick --now NOW --json` prints."""
    report = asyncio.run(engine.tick(now))
    for rule in report.rules.values():
        if rule.error:
            sys.exit(f"demo stopped: rule {rule.rule_id} failed at {now.isoformat()}: {rule.error}")
    return {"now": now.isoformat(), "rules": [rule.as_dict() for rule in report.rules.values()]}


def tally(rule: dict[str, Any]) -> Counter[str]:
    """A tick's rule report as counts: "cancelled: superseded" counts as cancelled, etc."""
    counts = Counter(queued=rule["enqueued"], sent=rule["sent"])
    for outcome, number in rule["skipped"].items():
        kind = outcome.split(":")[0]
        if kind in COLUMNS:
            counts[kind] += number
    return counts


def print_table(per_day: dict[date, dict[str, Counter[str]]], rules: list[str]) -> None:
    print("\nWhat each rule did, per day (UTC): q queued, s sent, c cancelled, h held, x suppressed")
    row(["day", *rules])
    for day, counts in per_day.items():
        row([f"{day:%a %d %b}", *(cell(counts.get(rule, Counter())) for rule in rules)])


def row(cells: list[str]) -> None:
    """One line of the per-day table: a day column, then one column per rule."""
    first, *rest = cells
    print(f"  {first:<12}" + "".join(f"{text:<25}" for text in rest).rstrip())


def cell(counts: Counter[str]) -> str:
    return " ".join(f"{LETTERS[column]}{counts[column]}" for column in COLUMNS if counts[column]) or "·"


def print_totals(per_day: dict[date, dict[str, Counter[str]]]) -> None:
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for counts in per_day.values():
        for rule, numbers in counts.items():
            totals[rule].update(numbers)
    print("\nTotals" + " " * 20 + "".join(f"{column:>11}" for column in COLUMNS))
    for rule, numbers in [*sorted(totals.items()), ("all rules", sum(totals.values(), Counter()))]:
        print(f"  {rule:<24}" + "".join(f"{numbers[column]:>11}" for column in COLUMNS))
    eml = len(list(Path("outbox").glob("*.eml")))
    print(f"\n{eml} emails (.eml files) in outbox/")


# Why the example data produced each outcome other than queued and sent.
WHY = {
    "cancelled: order_placed": "the contact ordered while the reminder waited for the morning",
    "cancelled: subscription_started": "the contact subscribed while the reminder waited for the morning",
    "cancelled: superseded": "the cart changed again while its reminder waited for the morning",
    "cancelled: stage changed": "the contact left the rule's stages while the message waited",
    "waiting: frequency cap": "a third email within 24 hours waited for the next morning",
    "held: coupon pool empty": "more renewals fell due than the pool had codes",
    "suppressed": f"{UNSUBSCRIBES[1]} unsubscribed on {UNSUBSCRIBES[0]:%d %b}, the day after her order",
}


def print_notes(outcomes: dict[str, Counter[str]]) -> None:
    """Every outcome besides queued and sent, with why, and what never got as far as the queue."""
    print("\nWorth a look:")
    for rule, seen in sorted(outcomes.items()):
        for outcome, number in sorted(seen.items()):
            why = WHY.get(outcome)
            print(f"  {rule}: {outcome} ×{number}" + (f" ({why})" if why else ""))
    codes = shown(EXAMPLES / "more_renewal_coupons.csv")
    for message in queue(status="held"):
        print(f"  Message {message['id']} to {message['email']} is held. Add codes, then release it:")
        print(f"    {command()} coupons import renewal {codes} --percent-off 15")
        print(f"    {command()} queue release {message['id']} --reason 'pool refilled'")
    print("\nNot in the table, because the rules never queued them:")
    for line in never_queued():
        print(f"  {line}")


def never_queued() -> list[str]:
    """Occurrences in the example data that a rule skips before queueing anything."""
    lines = (EXAMPLES / "events.jsonl").read_text(encoding="utf-8").splitlines()
    events = sorted((json.loads(line) for line in lines), key=lambda event: event["at"])
    for event in events:
        event["at"] = parse_timestamp(event["at"])
    of_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        of_type[event["type"]].append(event)
    orders = of_type["order_placed"]
    latest_carts = {cart["properties"]["cart_id"]: cart for cart in of_type["cart_updated"]}
    ordered_soon = sum(
        any(o["email"] == cart["email"] and cart["at"] < o["at"] <= cart["at"] + TICK for o in orders)
        for cart in latest_carts.values()
    )
    subscribed = {event["email"]: event["at"] for event in of_type["subscription_started"]}
    subscribed_first = 0
    with (EXAMPLES / "contacts.csv").open(encoding="utf-8", newline="") as handle:
        for contact in csv.DictReader(handle):
            if contact["trial_ends_at"] and contact["email"] in subscribed:
                ends = datetime.combine(date.fromisoformat(contact["trial_ends_at"]), dt_time(0))
                reminder = ends.replace(tzinfo=ZoneInfo(contact["timezone"])) - timedelta(days=3)
                subscribed_first += subscribed[contact["email"]] < reminder
    reported_twice = len(orders) - len({order["properties"]["order_id"] for order in orders})
    return [
        f"{ordered_soon} cart reminders: an order followed within the hour (cancel_if: order_placed)",
        f"{subscribed_first} trial reminders: the contact subscribed first (cancel_if: subscription_started)",
        f"{reported_twice} thank-you: the shop reported an order twice (once_per: order_id)",
    ]


def print_try_next() -> None:
    lan = queue(contact=LAN, rule="abandoned_cart")[0]
    sent_at = parse_timestamp(lan["send_at"])
    print("\nTry next:")
    if "AUTOMATOR_DATABASE_URL" in os.environ:
        from automator.display import hide_password

        url = hide_password(os.environ["AUTOMATOR_DATABASE_URL"])
        print("  # first, the demo's database (with its password, if it has one)")
        print(f"  export AUTOMATOR_DATABASE_URL={shlex.quote(url)}")
    for why, line in (
        ("every message, newest first", "queue list"),
        ("Lan's abandoned-cart email, with its history", f"queue show {lan['id']}"),
        (
            "render it again: it says when it was sent, then shows it",
            f"preview abandoned_cart --contact {LAN} --now {sent_at:%Y-%m-%dT%H:%MZ}",
        ),
        ("validate rules/ and email_templates/ after an edit", "check"),
    ):
        print(f"  # {why}\n  {command()} {line}")


def queue(**where: str) -> list[dict[str, Any]]:
    """`automator queue list --json` with filters, e.g. queue(status="held")."""
    options = [part for name, value in where.items() for part in (f"--{name}", value)]
    listed: list[dict[str, Any]] = json.loads(automator("queue", "list", "--json", *options, show=False))
    return listed


if __name__ == "__main__":
    main()
