"""`automator simulate`: the real engine run forward on a copy of the store, sending nothing,
whose figures are what real ticks over the same days then do; and the plan of a change."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import all_messages, cart, history_of, statuses, utc

START = utc("2026-11-20 00:00")
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # the shipped automator.toml's; quiet hours 14:00–01:00 UTC
SCRIPT = Path(sys.executable).with_name("automator")
AUTOMATOR = (
    [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from automator.cli import app; app()"]
)
COLUMNS = {"cancelled": "cancelled", "held": "held", "suppressed": "suppressed", "skipped": "skipped"}


@pytest.fixture
def shop(make_contact, make_event, cli):
    """Carts that are sent, sent after quiet hours, suppressed, or made to wait by the
    frequency cap; an order whose thank-you comes the next day."""
    for name in ("lan", "binh", "chi", "dung", "giang"):
        make_contact(f"{name}@example.com", first_name=name.title(), timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 02:00"), "lan@example.com", id="c-lan", **cart("c1"))
    make_event("cart_updated", utc("2026-11-20 02:00"), "binh@example.com", id="c-binh", **cart("c2"))
    make_event(
        "order_placed", utc("2026-11-20 02:30"), "binh@example.com", id="o-binh", order_id="o1", total=5
    )
    make_event("cart_updated", utc("2026-11-20 13:30"), "chi@example.com", id="c-chi", **cart("c3"))
    make_event("cart_updated", utc("2026-11-20 05:00"), "dung@example.com", id="c-dung", **cart("c4"))
    for number in (5, 6, 7):  # three reminders due at once: the cap (2 a day) makes one wait
        make_event(
            "cart_updated",
            utc("2026-11-20 02:00"),
            "giang@example.com",
            id=f"c{number}",
            **cart(f"c{number}"),
        )
    assert cli("suppressions", "add", "dung@example.com").exit_code == 0


def simulated(cli, *args: str) -> dict:
    result = cli("simulate", "--from", START.isoformat(), "--days", "2", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def by_day(rows: list[dict]) -> dict[tuple[str, str], dict[str, int]]:
    return {
        (row["date"], row["rule"]): {
            k: v for k, v in row.items() if k not in ("date", "rule", "error", "reasons")
        }
        for row in rows
    }


def real_ticks(cli, store, hours: int) -> dict[tuple[str, str], dict[str, int]]:
    """Tick the real store hourly with `automator tick --now`, adding each tick's summary to
    its day (in the project's zone), as simulate says it counts; "waited" counts each
    message whose history says it was made to wait, on the day it first waited."""
    days: dict[tuple[str, str], Counter[str]] = {}
    for hour in range(hours):
        now = START + timedelta(hours=hour)
        result = cli("tick", "--now", now.isoformat(), "--json")
        assert result.exit_code == 0, result.output
        day = now.astimezone(ZONE).date().isoformat()
        for rule in json.loads(result.stdout)["rules"]:
            counts = days.setdefault((day, rule["rule"]), Counter())
            counts.update(queued=rule["enqueued"], sent=rule["sent"])
            for outcome, count in rule["skipped"].items():
                word = outcome.split(":")[0]
                if word != "waiting":
                    counts[COLUMNS[word]] += count
    for message in all_messages(store):
        waits = [line.at for line in history_of(store, message.id) if line.reason.startswith("waiting")]
        if waits:
            days[(waits[0].astimezone(ZONE).date().isoformat(), message.rule_id)]["waited"] += 1
    columns = ("queued", "sent", "cancelled", "held", "suppressed", "skipped", "waited")
    return {key: {column: counts[column] for column in columns} for key, counts in days.items()}


def test_simulate_matches_what_real_ticks_then_do(shop, cli, store):
    forecast = simulated(cli)

    assert statuses(store) == {}  # nothing was queued in the real store
    assert [row["error"] for row in forecast["days"] if row["error"]] == []
    assert by_day(forecast["days"]) == real_ticks(cli, store, 48)
    totals = Counter()
    for row in forecast["days"]:
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
    # lan, chi (after quiet hours) and giang's three carts are sent, the third a day later;
    # dung is suppressed; binh's thank-you is queued (and held: its coupon has no pool).
    assert (totals["sent"], totals["suppressed"], totals["waited"]) == (5, 1, 1)
    assert totals["held"] >= 1


def test_simulate_counts_a_message_that_waits_twice_once(cli, store, make_contact, make_event):
    make_contact(timezone="Asia/Ho_Chi_Minh")
    for number in range(5):  # five reminders due at once, at most two a day (the cap)
        make_event("cart_updated", utc("2026-11-20 02:00"), id=f"c{number}", **cart(f"c{number}"))

    forecast = simulated(cli, "abandoned_cart", "--days", "3")

    days = by_day(forecast["days"])
    sent = [days[(day, "abandoned_cart")]["sent"] for day in ("2026-11-20", "2026-11-21", "2026-11-22")]
    waited = [days[(day, "abandoned_cart")]["waited"] for day in ("2026-11-20", "2026-11-21", "2026-11-22")]
    # Three wait on the 20th; on the 21st one of them waits again, and is not counted again.
    assert (sent, waited) == ([2, 2, 1], [3, 0, 0])


def test_simulate_only_runs_the_rules_named(shop, cli):
    forecast = simulated(cli, "abandoned_cart")

    assert {row["rule"] for row in forecast["days"]} == {"abandoned_cart"}
    assert sum(row["sent"] for row in forecast["days"]) == 5


def test_simulate_names_an_unknown_rule(shop, cli):
    result = cli("simulate", "nope", "--from", START.isoformat(), "--days", "1")

    assert result.exit_code == 1
    assert "no rule 'nope'" in result.output and "abandoned_cart" in result.output


def test_simulate_prints_a_table_per_day_and_rule(shop, cli):
    result = cli("simulate", "--from", START.isoformat(), "--days", "2")

    assert result.exit_code == 0, result.output
    assert "nothing was sent or written" in result.stdout
    [row] = [
        row
        for row in map(str.split, result.stdout.splitlines())
        if row[:2] == ["2026-11-20", "abandoned_cart"]
    ]
    assert row[2:4] == ["5", "3"]  # queued that day (local time): lan, chi, giang's three


def test_simulate_leaves_out_days_with_nothing_and_ends_with_each_rules_totals(shop, cli):
    forecast = simulated(cli, "--days", "3")
    result = cli("simulate", "--from", START.isoformat(), "--days", "3")

    assert result.exit_code == 0, result.output
    table, _, why = result.stdout.partition("why (cancelled, held, suppressed, skipped):\n")
    rows = [row.split() for row in table.splitlines()[2:]]
    dated = [row for row in rows if row[0] != "total"]
    totals = {row[1]: [int(figure) for figure in row[2:]] for row in rows if row[0] == "total"}
    columns = ("queued", "sent", "cancelled", "held", "suppressed", "skipped", "waited")
    busy = [day for day in forecast["days"] if any(day[name] for name in columns)]
    assert len(forecast["days"]) > len(busy) == len(dated) > 0  # the quiet days are left out
    assert all(any(int(figure) for figure in row[2:]) for row in dated)
    assert set(totals) == set(forecast["rules"])  # a rule that did nothing is still named
    for rule, figures in totals.items():
        days = [day for day in forecast["days"] if day["rule"] == rule]
        assert figures == [sum(day[name] for day in days) for name in columns]
    assert "2026-11-20 00:00 UTC to 2026-11-23 00:00 UTC, a tick every 1h" in result.stdout
    reasons = Counter()
    for day in busy:
        reasons.update({(day["rule"], reason): n for reason, n in day["reasons"].items()})
    assert reasons  # the shop's carts include a suppressed address
    assert why.splitlines() == [f"  {rule}: {n} {reason}" for (rule, reason), n in sorted(reasons.items())]


@pytest.mark.sqlite_only
def test_simulate_leaves_the_sqlite_file_as_it_was_and_sends_nothing(
    shop, store, project_dir, process_env, smtp_server
):
    store.dispose()
    files = sorted(project_dir.glob("automator.db*"))
    before = {path.name: path.read_bytes() for path in files}
    env = {**process_env, "AUTOMATOR_SMTP_URL": smtp_server.url()}

    done = subprocess.run(
        [
            *AUTOMATOR,
            "--project",
            str(project_dir),
            "simulate",
            "--from",
            START.isoformat(),
            "--days",
            "2",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert sum(row["sent"] for row in json.loads(done.stdout)["days"]) == 5
    after = {path.name: path.read_bytes() for path in sorted(project_dir.glob("automator.db*"))}
    assert after.keys() >= before.keys()
    assert {name: after[name] for name in before} == before
    assert not (project_dir / "outbox").exists()
    assert (smtp_server.connections, smtp_server.messages) == (0, [])


def test_simulate_leaves_postgresql_as_it_was(shop, store, cli, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the SQLite file's bytes are compared in the test above")
    before = _row_counts(store)

    simulated(cli)

    assert _row_counts(store) == before


def _row_counts(store) -> dict[str, tuple[int, int | None]]:
    from sqlalchemy import MetaData, func, select

    tables = MetaData()
    tables.reflect(bind=store.engine)
    counts = {}
    with store.engine.connect() as connection:
        for table in tables.sorted_tables:
            top = func.max(table.c.id) if "id" in table.c else func.count()
            counts[table.name] = tuple(connection.execute(select(func.count(), top).select_from(table)).one())
    return counts


def write_rules(folder: Path, delay: str, source: Path) -> Path:
    """A copy of the shipped rules with the abandoned cart's delay changed."""
    folder.mkdir()
    for path in source.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        (folder / path.name).write_text(text.replace("delay: 1h", f"delay: {delay}"), encoding="utf-8")
    return folder


def test_plan_shows_who_would_get_it_at_another_time(shop, cli, project_dir, tmp_path):
    other = write_rules(tmp_path / "later", "3h", project_dir / "rules")

    result = cli("simulate", "--rules", str(other), "--from", START.isoformat(), "--days", "2", "--json")

    assert result.exit_code == 0, result.output
    plan = {rule["rule"]: rule for rule in json.loads(result.stdout)["rules"]}
    cart_plan = plan["abandoned_cart"]
    # lan's and giang's reminders go at 05:00 instead of 03:00; chi's still waits for the morning.
    assert cart_plan["moved"] == {"contacts": 2, "examples": ["giang@example.com", "lan@example.com"]}
    assert cart_plan["newly"]["contacts"] == cart_plan["no_longer"]["contacts"] == 0
    assert plan["post_purchase_thank_you"]["moved"]["contacts"] == 0


def test_plan_shows_who_would_no_longer_get_it(shop, cli, project_dir, tmp_path):
    other = tmp_path / "fewer"
    other.mkdir()
    for path in (project_dir / "rules").glob("*.yaml"):
        if path.stem != "abandoned_cart":
            (other / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")

    result = cli("simulate", "--rules", str(other), "--from", START.isoformat(), "--days", "2")

    assert result.exit_code == 0, result.output
    said = "3 contacts would no longer get one (e.g. chi@example.com, giang@example.com, lan@example.com)"
    assert said in result.stdout


def test_plan_against_a_git_revision(shop, cli, project_dir):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(project_dir), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "rules")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "rules")
    path = project_dir / "rules" / "abandoned_cart.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("delay: 1h", "delay: 3h"), encoding="utf-8")

    result = cli("simulate", "--against", "HEAD", "--from", START.isoformat(), "--days", "2", "--json")

    assert result.exit_code == 0, result.output
    [cart_plan] = [rule for rule in json.loads(result.stdout)["rules"] if rule["rule"] == "abandoned_cart"]
    assert cart_plan["moved"]["examples"] == ["giang@example.com", "lan@example.com"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rules", "no/such/folder"], "no/such/folder: no such folder of rules"),
        (["--against", "no-such-ref"], "--against no-such-ref:"),
    ],
)
def test_plan_refuses_what_it_cannot_compare(cli, args, said, database_url):
    result = cli("simulate", *args, "--from", START.isoformat(), "--days", "1")

    assert result.exit_code == 2
    assert said in result.output


def test_plan_refuses_rules_that_do_not_load(cli, project_dir, tmp_path, database_url):
    other = write_rules(tmp_path / "broken", "1h", project_dir / "rules")
    (other / "abandoned_cart.yaml").write_text("id: abandoned_cart\ntrigger: {event: x, delay: soon}\n")

    result = cli("simulate", "--rules", str(other), "--from", START.isoformat(), "--days", "1")

    assert result.exit_code == 2
    assert f"the rules in {other} do not load" in result.output


def test_plan_counts_a_schedule_moved_to_another_hour_as_another_time() -> None:
    """Another hour fires other occurrences: the same contacts get their message at another
    time, not a new one beside one they no longer get."""
    from automator.simulation.plan import compare

    ten, six = utc("2026-12-08 03:00"), utc("2026-12-08 11:00")
    before = [
        ("digest", "an@example.com", f"schedule@{ten.isoformat()}", ten),
        ("digest", "bo@example.com", f"schedule@{ten.isoformat()}", ten),
    ]
    after = [("digest", "an@example.com", f"schedule@{six.isoformat()}", six)]

    (change,) = compare(before, after, ["digest"])

    assert (change.moved, change.newly, change.no_longer) == ({"an@example.com"}, set(), {"bo@example.com"})
