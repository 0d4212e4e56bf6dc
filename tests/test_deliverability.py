"""Every email the shipped templates produce, in every language they have, is one a receiving
server accepts: SpamAssassin's local rules score it at most 1.0, and it is the well-formed
RFC 5322 message a strict parser reads without a defect.

The emails are the real thing: the shipped rules and templates, a tick of the real engine, the
file transport's `.eml` files, byte for byte what an SMTP server would receive.
"""

from __future__ import annotations

import difflib
import email.policy
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.utils import parseaddr
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from automator.store import Store, coupons
from automator.transports.file import FileTransport
from tests.conftest import REPO, utc

NOW = utc("2026-11-20 03:00")  # 10:00 in Ho Chi Minh City, 14:00 in Sydney: outside quiet hours
MAX_SCORE = 1.0
SPAMASSASSIN = ["spamassassin", "-L", "-t"]
MBOX_FROM = b"From automator@localhost Fri Nov 20 03:00:00 2026\n"
# The English contact lives in Sydney, the Vietnamese one in Ho Chi Minh City.
PEOPLE = {
    "en": {"first_name": "Anna", "last_name": "Walsh", "timezone": "Australia/Sydney", "currency": "AUD"},
    "vi": {"first_name": "Lan", "last_name": "Nguyễn Thị", "timezone": "Asia/Ho_Chi_Minh", "currency": "VND"},
}
ITEMS = {
    "en": [("Silk scarf", 1, 49.5), ("Linen shirt", 2, 65)],
    "vi": [("Áo dài lụa", 1, 1_250_000), ("Khăn lụa", 2, 180_000)],
}

Scenario = Callable[[Any, Any, Store, str, str], None]  # make_contact, make_event, store, email, locale


def abandoned_cart(make_contact, make_event, store: Store, email: str, locale: str) -> None:
    contact(make_contact, email, locale, stage="consideration")
    items = [{"name": name, "quantity": quantity, "price": price} for name, quantity, price in ITEMS[locale]]
    make_event(
        "cart_updated",
        NOW - timedelta(hours=1),
        email=email,
        id=f"cart-{email}",
        cart_id=f"cart-{locale}",
        items=items,
        total=sum(item["quantity"] * item["price"] for item in items),
        currency=PEOPLE[locale]["currency"],
        cart_url=f"https://shop.example.com/cart/cart-{locale}",
    )


def post_purchase_thank_you(make_contact, make_event, store: Store, email: str, locale: str) -> None:
    contact(make_contact, email, locale, stage="conversion")
    total = sum(quantity * price for _, quantity, price in ITEMS[locale])
    currency = PEOPLE[locale]["currency"]
    make_event(
        "order_placed",
        NOW - timedelta(days=1),
        email=email,
        id=f"order-{email}",
        order_id=f"LS-{locale.upper()}-1042",
        total=total,
        currency=currency,
    )


def renewal_offer(make_contact, make_event, store: Store, email: str, locale: str) -> None:
    contact(
        make_contact,
        email,
        locale,
        stage="retention",
        plan="Premium",
        renews_at=(NOW + timedelta(days=30)).isoformat(),
    )
    with store.session() as session:
        code = f"RENEW-{locale.upper()}-7Q4M"
        coupons.import_pool(session, "renewal", [code], 15, NOW + timedelta(days=40), NOW)


def trial_ending(make_contact, make_event, store: Store, email: str, locale: str) -> None:
    contact(
        make_contact,
        email,
        locale,
        stage="consideration",
        trial_ends_at=(NOW + timedelta(days=3)).isoformat(),
    )


SCENARIOS: dict[str, Scenario] = {
    "abandoned_cart": abandoned_cart,
    "post_purchase_thank_you": post_purchase_thank_you,
    "renewal_offer": renewal_offer,
    "trial_ending": trial_ending,
}


def contact(make_contact, email: str, locale: str, **fields: Any) -> None:
    person = {key: value for key, value in PEOPLE[locale].items() if key != "currency"}
    make_contact(email, locale=locale, **person, **fields, _now=NOW - timedelta(days=40))


def shipped_variants() -> list[tuple[str, str]]:
    """(template, locale) for every template folder and every language it has a body in."""
    variants = []
    for folder in sorted(path for path in (REPO / "email_templates").iterdir() if path.is_dir()):
        locales = {"en"} | {part.suffixes[0][1:] for part in folder.glob("body.*.html")}
        variants += [(folder.name, locale) for locale in sorted(locales)]
    return variants


@pytest.fixture
def transport(project_dir: Path) -> FileTransport:
    """The file transport (in place of the recording one): the emails as bytes, as sent."""
    return FileTransport(project_dir / "outbox")


@pytest.fixture
def shipped_emails(make_contact, make_event, store, tick, transport) -> dict[tuple[str, str], bytes]:
    """The raw email each shipped template sends in each of its languages, by (template, locale),
    from one tick of the real engine (one contact per email: the frequency cap stays out of it)."""
    recipients = {}
    for template, locale in shipped_variants():
        if template not in SCENARIOS:
            continue
        email = f"{PEOPLE[locale]['first_name'].lower()}.{template}@example.com"
        SCENARIOS[template](make_contact, make_event, store, email, locale)
        recipients[email] = (template, locale)

    tick(NOW)

    sent = {}
    for path in transport.outbox.glob("*.eml"):
        raw = path.read_bytes()
        to = parseaddr(message_from_bytes(raw)["To"])[1]
        sent[recipients[to]] = raw
    return sent


def test_every_shipped_template_and_language_has_an_email_here(shipped_emails) -> None:
    missing = sorted(set(shipped_variants()) - set(shipped_emails))
    assert not missing, f"no email was built for {missing}: give the template a scenario in SCENARIOS"


# SpamAssassin ------------------------------------------------------------------------------


def spamassassin_reports(raws: list[bytes], home: Path) -> list[tuple[float, str]]:
    """The score and the rules that hit for each email, from one `spamassassin -L -t` (local
    rules only) over all of them as an mbox: its start-up, about a second, is most of its time."""
    if shutil.which(SPAMASSASSIN[0]) is None:
        pytest.fail(
            "spamassassin is not installed: `make test` installs it (Debian package spamassassin)",
            pytrace=False,
        )
    # Its own HOME, and no learning: the run neither reads nor trains anyone's Bayes database.
    checked = subprocess.run(
        [*SPAMASSASSIN, "--mbox", "--cf=bayes_auto_learn 0"],
        input=as_mbox(raws),
        capture_output=True,
        timeout=300,
        check=True,
        env={**os.environ, "HOME": str(home)},
    )
    checked_emails = re.split(rb"(?m)^From .*\n", checked.stdout)[1:]
    assert len(checked_emails) == len(raws), checked.stderr.decode(errors="replace")
    return [_score(message_from_bytes(checked_email)) for checked_email in checked_emails]


def as_mbox(raws: list[bytes]) -> bytes:
    """The emails in one mbox (mboxrd: a line starting with "From " gets a ">" before it)."""
    return b"".join(
        MBOX_FROM + re.sub(rb"(?m)^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n")) + b"\n" for raw in raws
    )


def _score(checked: Message) -> tuple[float, str]:
    status = re.sub(r"\s+", " ", str(checked["X-Spam-Status"])).replace(", ", ",")
    found = re.search(r"score=(-?[\d.]+) .*tests=(\S*)", status)
    assert found, f"no score in X-Spam-Status: {status!r}"
    return float(found[1]), found[2]


def test_every_shipped_email_scores_at_most_1_on_spamassassin(shipped_emails, tmp_path: Path) -> None:
    variants = sorted(shipped_emails)

    reports = spamassassin_reports([shipped_emails[variant] for variant in variants], tmp_path)

    table = "\n".join(
        f"  {template} ({locale}): {score:.1f} {tests}"
        for (template, locale), (score, tests) in zip(variants, reports, strict=True)
    )
    assert all(score <= MAX_SCORE for score, _ in reports), f"scores above {MAX_SCORE}:\n{table}"


# RFC 5322 and MIME -------------------------------------------------------------------------


def strictly_parsed(raw: bytes) -> EmailMessage:
    """Parsed with `email.policy.strict`: any defect raises instead of being noted."""
    message = message_from_bytes(raw, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    return message


def test_every_email_is_dated_and_declares_mime_1_0(shipped_emails) -> None:
    for variant, raw in shipped_emails.items():
        message = strictly_parsed(raw)
        assert message["Date"].datetime == NOW, variant
        assert message["MIME-Version"] == "1.0", variant


def test_every_message_id_is_on_the_senders_domain(shipped_emails) -> None:
    for variant, raw in shipped_emails.items():
        message = strictly_parsed(raw)
        sender_domain = message["From"].addresses[0].domain
        message_id = str(message["Message-ID"]).strip()
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id), (variant, message_id)
        assert message_id[1:-1].rpartition("@")[2] == sender_domain, (variant, message_id)


def test_no_header_line_is_longer_than_rfc_5322_allows(shipped_emails) -> None:
    """998 characters at most (a MUST); 78 at most (a SHOULD) unless there is no whitespace to
    fold the line at, as in a header holding one long URL or Message-ID."""
    for variant, raw in shipped_emails.items():
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        for line in head.split("\r\n"):
            assert len(line) <= 998, (variant, line)
            if len(line) > 78:
                tokens = line.split()
                unfoldable = len(tokens) == 1 or (len(tokens) == 2 and tokens[0].endswith(":"))
                assert unfoldable, f"{variant}: a line of {len(line)} characters could be folded: {line}"


class VisibleText(HTMLParser):
    """The words a reader sees in an HTML body: not the head, nor what is hidden."""

    HIDDEN = re.compile(r"display\s*:\s*none|mso-hide\s*:\s*all", re.IGNORECASE)
    VOID = frozenset({"br", "img", "meta", "link", "hr", "input", "col", "area", "base", "wbr", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.words: list[str] = []
        self._open: list[bool] = []  # per open element: is it hidden?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        style = dict(attrs).get("style") or ""
        self._open.append(tag in {"head", "title", "style", "script"} or bool(self.HIDDEN.search(style)))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if not any(self._open):
            self.words += data.split()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation or URLs: what both parts should agree on."""
    text = re.sub(r"\b(?:https?|mailto):\S+", " ", text.lower())
    return re.findall(r"[^\W_]+(?:[.,'’][^\W_]+)*", text)


def test_the_text_part_says_what_the_html_part_shows(shipped_emails) -> None:
    for variant, raw in shipped_emails.items():
        message = strictly_parsed(raw)
        text = message.get_body(("plain",)).get_content()
        parser = VisibleText()
        parser.feed(message.get_body(("html",)).get_content())
        shown, said = words(" ".join(parser.words)), words(text)

        similarity = difflib.SequenceMatcher(None, shown, said, autojunk=False).ratio()
        diff = "\n".join(difflib.unified_diff(shown, said, "html", "text", lineterm="", n=1))
        assert similarity >= 0.9, f"{variant}: text and HTML differ ({similarity:.2f}):\n{diff}"
        # Amounts, dates, codes and order numbers above all: the same ones in both.
        assert Counter(filter(has_digit, shown)) == Counter(filter(has_digit, said)), variant


def has_digit(word: str) -> bool:
    return any(character.isdigit() for character in word)
