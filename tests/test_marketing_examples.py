"""The worked examples in examples/marketing/ do what their comments promise, copied into a
project as a marketer would (examples/marketing/README.md): `automator check` is clean, and a
week of signups, birthdays, product views and carts, ticked hour by hour with `tick --now`,
sends the welcome series, the birthday coupon, the Monday digest, the browse reminder and
the A/B cart reminder to whom they should, when they should.

The week runs once per store (a module fixture): each test reads one rule's outcome from it.
Events are imported in the hour they happen, as a shop sends them, since an event moves its
contact along the journey when it is imported.
"""

from __future__ import annotations

import email
import email.utils
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automator.cli import app
from automator.model import Rule
from automator.project import load_project
from automator.store import Store, messages
from automator.store.messages import QueueFilter
from automator.tables import Message
from tests.conftest import REPO, TEST_SECRET, cart, utc

EXAMPLES = REPO / "examples" / "marketing"
START = utc("2026-11-04 00:00")  # a Wednesday; the week holds Monday 9 November
HOURS = 7 * 24

CONTACTS = """\
email,first_name,locale,timezone,stage,birthday
an@example.com,An,en,Asia/Ho_Chi_Minh,awareness,
binh@example.com,Bình,en,Asia/Ho_Chi_Minh,awareness,
chi@example.com,Chi,en,Europe/London,loyalty,1988-11-06
em@example.com,Em,en,Europe/London,loyalty,1990-12-25
giang@example.com,Giang,en,America/New_York,retention,
hai@example.com,Hải,en,,retention,
khanh@example.com,Khánh,en,Asia/Ho_Chi_Minh,awareness,
lam@example.com,Lâm,en,Asia/Ho_Chi_Minh,awareness,
"""
SHOPPERS = ("nam", "oanh", "phuc", "quang", "son", "tam")


def _events() -> list[dict[str, Any]]:
    """The week's events, in the order they happen."""
    lantern = {"product_id": "P-den", "name": "Đèn lồng Hội An"}
    scarf = {"product_id": "P-khan", "name": "Khăn lụa Hà Đông"}
    hat = {"product_id": "P-non", "name": "Nón lá"}
    happened = [
        ("2026-11-04 02:00", "signed_up", "an", {}),
        ("2026-11-04 03:00", "signed_up", "binh", {}),
        ("2026-11-04 03:00", "product_viewed", "khanh", lantern),
        ("2026-11-04 03:20", "product_viewed", "khanh", scarf),
        ("2026-11-04 04:00", "product_viewed", "lam", hat),
        ("2026-11-04 05:00", "cart_updated", "lam", cart("c-lam")),
        ("2026-11-04 05:30", "order_placed", "lam", {"order_id": "o-lam", "total": 90, "currency": "USD"}),
        *[("2026-11-04 06:00", "cart_updated", name, cart(f"c-{name}")) for name in SHOPPERS],
        ("2026-11-05 05:00", "order_placed", "binh", {"order_id": "o-binh", "total": 40, "currency": "USD"}),
        ("2026-11-06 03:00", "product_viewed", "khanh", hat),
    ]
    return [
        {
            "id": f"evt-{number}",
            "type": kind,
            "email": f"{name}@example.com",
            "at": utc(at).isoformat(),
            "properties": properties,
        }
        for number, (at, kind, name, properties) in enumerate(happened)
    ]


@dataclass
class Week:
    """The project the examples were copied into, after a week of ticks."""

    folder: Path
    environ: dict[str, str]
    checked: str

    def rule(self, rule_id: str) -> Rule:
        found = load_project(self.folder, self.environ).rule(rule_id)
        assert found is not None
        return found

    def messages(self, rule_id: str) -> list[Message]:
        """The rule's messages, oldest first."""
        with self.store() as store, store.session() as session:
            found = messages.listing(session, QueueFilter(rule=rule_id, limit=1000))
        return sorted(found, key=lambda message: (message.created_at, message.id or 0))

    def sent(self, rule_id: str) -> list[Message]:
        return [message for message in self.messages(rule_id) if message.status == "sent"]

    def text(self, message: Message) -> str:
        assert message.id is not None
        with self.store() as store, store.session() as session:
            return messages.content(session, message.id).text

    def automator(self, *args: str) -> str:
        """The real CLI in the week's project."""
        unset = {name: None for name in ("AUTOMATOR_SMTP_URL", "AUTOMATOR_FROM", "AUTOMATOR_TIMEZONE")}
        result = CliRunner().invoke(
            app, ["--project", str(self.folder), *args], env={**self.environ, **unset}
        )
        assert result.exit_code == 0, (args, result.output, result.exception)
        return str(result.output)

    def store(self) -> _OpenStore:
        return _OpenStore(load_project(self.folder, self.environ).open_store())


class _OpenStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> Store:
        return self._store

    def __exit__(self, *exc: object) -> None:
        self._store.dispose()


def _project(folder: Path) -> None:
    """A project made like the demo's, with the marketing examples copied in as the README says."""
    shutil.copytree(REPO / "rules", folder / "rules")
    shutil.copytree(REPO / "email_templates", folder / "email_templates")
    shutil.copy(REPO / "automator.toml", folder / "automator.toml")
    for rule in (EXAMPLES / "rules").glob("*.yaml"):
        shutil.copy(rule, folder / "rules" / rule.name)
    shutil.copytree(EXAMPLES / "email_templates", folder / "email_templates", dirs_exist_ok=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def week(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    folder = tmp_path_factory.mktemp(f"marketing-{request.param}")
    _project(folder)
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'automator.db'}"
    else:
        url = str(request.getfixturevalue("postgres_server").new_database())
    environ = {
        "AUTOMATOR_DATABASE_URL": url,
        "AUTOMATOR_OUTBOX": str(folder / "outbox"),
        "AUTOMATOR_SECRET": TEST_SECRET,
        "AUTOMATOR_RENDER_WORKERS": "0",
    }
    unset = {name: None for name in ("AUTOMATOR_SMTP_URL", "AUTOMATOR_FROM", "AUTOMATOR_TIMEZONE")}
    runner = CliRunner()

    def automator(*args: str) -> str:
        result = runner.invoke(app, ["--project", str(folder), *args], env={**environ, **unset})
        assert result.exit_code == 0, (args, result.output, result.exception)
        return str(result.output)

    checked = automator("check")
    (folder / "contacts.csv").write_text(CONTACTS + _shoppers(), encoding="utf-8")
    automator("contacts", "import", str(folder / "contacts.csv"), "--now", START.isoformat())
    waiting = _events()
    for hour in range(HOURS + 1):
        now = START + timedelta(hours=hour)
        due = [event for event in waiting if datetime.fromisoformat(event["at"]) <= now]
        if due:
            waiting = waiting[len(due) :]
            feed = folder / f"events-{hour}.jsonl"
            feed.write_text("".join(json.dumps(event) + "\n" for event in due), encoding="utf-8")
            automator("events", "import", str(feed), "--now", now.isoformat())
        automator("tick", "--now", now.isoformat())
    yield Week(folder, environ, checked)


def _shoppers() -> str:
    return "".join(
        f"{name}@example.com,{name.title()},en,Asia/Ho_Chi_Minh,consideration,\n" for name in SHOPPERS
    )


def sent_to(found: list[Message]) -> list[tuple[str, int, datetime | None]]:
    return [(message.email, message.step, _utc(message.sent_at)) for message in found]


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def test_the_examples_pass_check(week: Week) -> None:
    assert week.checked.strip() == "ok: 9 rules"


def test_automator_rules_says_what_each_example_does(tmp_path: Path) -> None:
    _project(tmp_path)

    result = CliRunner().invoke(app, ["--project", str(tmp_path), "rules"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    said = {line.split()[0]: line.split(None, 1)[1] for line in result.output.splitlines()}
    assert said["welcome_series"] == (
        "[awareness, consideration] 0s after signed_up → "
        "3 steps: welcome_1, 2d later welcome_2, 3d later welcome_3; goal order_placed; priority 15"
    )
    assert said["birthday"].endswith("] every year on contact.birthday → birthday; priority 25")
    assert said["weekly_digest"] == (
        "[retention, loyalty] on schedule 0 9 * * 1 in each contact's zone → weekly_digest; priority 5"
    )
    assert said["browse_abandonment"] == (
        "[awareness, consideration] 2h after product_viewed, cancelled by cart_updated or order_placed"
        " → browse_abandonment; at most 1 per 7d; priority 8"
    )
    assert said["cart_reminder_ab"].endswith(
        "→ variants a: cart_reminder_a 50%, b: cart_reminder_b 50%; priority 18"
    )


def test_the_welcome_series_sends_three_emails_over_five_days(week: Week) -> None:
    mine = [message for message in week.sent("welcome_series") if message.email == "an@example.com"]

    assert sent_to(mine) == [
        ("an@example.com", 1, utc("2026-11-04 02:00")),
        ("an@example.com", 2, utc("2026-11-06 02:00")),
        ("an@example.com", 3, utc("2026-11-09 02:00")),
    ]
    assert [message.subject for message in mine] == [
        "Welcome to Lotus Shop, An",
        "How our silk is made",
        "10% off your first order",
    ]
    assert "WELCOME-" in week.text(mine[2])


def test_the_welcome_series_stops_once_the_contact_orders(week: Week) -> None:
    binh = [message for message in week.messages("welcome_series") if message.email == "binh@example.com"]

    assert sent_to([message for message in binh if message.status == "sent"]) == [
        ("binh@example.com", 1, utc("2026-11-04 03:00")),
    ]
    assert [message.step for message in binh if message.status in ("queued", "sent")] == [1]


def test_the_birthday_coupon_goes_on_the_birthday_after_quiet_hours(week: Week) -> None:
    [message] = week.sent("birthday")

    # Midnight in London falls in its quiet hours (21:00-08:00): it goes at 08:00.
    assert (message.email, _utc(message.sent_at)) == ("chi@example.com", utc("2026-11-06 08:00"))
    assert message.occurrence.endswith("2026")
    assert message.subject == "Happy birthday, Chi!"
    assert "BDAY-" in week.text(message)


def test_the_monday_digest_goes_at_nine_in_each_contacts_zone(week: Week) -> None:
    sent = {message.email: _utc(message.sent_at) for message in week.sent("weekly_digest")}

    assert sent == {
        "binh@example.com": utc("2026-11-09 02:00"),  # Ho Chi Minh City; a customer since Thursday
        "lam@example.com": utc("2026-11-09 02:00"),  # Ho Chi Minh City; ordered on Wednesday
        "hai@example.com": utc("2026-11-09 02:00"),  # no zone of his own: the project's
        "chi@example.com": utc("2026-11-09 09:00"),  # London
        "em@example.com": utc("2026-11-09 09:00"),
        "giang@example.com": utc("2026-11-09 14:00"),  # New York
    }


def test_browse_abandonment_reminds_once_a_week_and_skips_the_rest(week: Week) -> None:
    khanh = [
        message for message in week.messages("browse_abandonment") if message.email == "khanh@example.com"
    ]

    assert [(message.status, _utc(message.sent_at)) for message in khanh if message.status == "sent"] == [
        ("sent", utc("2026-11-04 05:00")),
    ]
    assert khanh[0].subject == "Still thinking about Đèn lồng Hội An?"
    assert sorted(message.status for message in khanh) == ["sent", "skipped", "skipped"]


def test_browse_abandonment_is_cancelled_by_a_cart(week: Week) -> None:
    lam = [message for message in week.messages("browse_abandonment") if message.email == "lam@example.com"]

    assert [message for message in lam if message.status == "sent"] == []


def test_the_ab_cart_reminder_gives_each_contact_its_variant(week: Week) -> None:
    send = week.rule("cart_reminder_ab").journey[0].send
    sent = week.sent("cart_reminder_ab")

    assert sorted(message.email for message in sent) == sorted(f"{name}@example.com" for name in SHOPPERS)
    assert all(_utc(message.sent_at) == utc("2026-11-05 06:00") for message in sent)
    assert [message.variant for message in sent] == [
        send.choose(message.rule_id, message.contact_id) for message in sent
    ]
    assert {message.variant for message in sent} == {"a", "b"}
    subjects = {"a": "Your cart is waiting for you", "b": "5% off the cart you left"}
    assert all(message.subject == subjects[message.variant or ""] for message in sent)
    assert all(("CART-" in week.text(message)) == (message.variant == "b") for message in sent)


def test_the_ab_variant_is_in_the_queue_listing_and_the_email_header(week: Week) -> None:
    listed = json.loads(week.automator("queue", "list", "--rule", "cart_reminder_ab", "--json"))
    variants = {message.email: message.variant for message in week.sent("cart_reminder_ab")}
    emails = [
        email.message_from_bytes(path.read_bytes()) for path in sorted((week.folder / "outbox").glob("*.eml"))
    ]
    headers = {
        email.utils.parseaddr(str(sent["To"]))[1]: sent["X-Automator-Variant"]
        for sent in emails
        if sent["Subject"] in ("Your cart is waiting for you", "5% off the cart you left")
    }

    assert {entry["email"]: entry["variant"] for entry in listed} == variants
    assert headers == variants


def test_the_ab_cart_reminder_is_cancelled_by_an_order(week: Week) -> None:
    assert [
        message.email for message in week.sent("cart_reminder_ab") if message.email == "lam@example.com"
    ] == []
