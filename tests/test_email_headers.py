"""No header value, wherever it comes from, can add a header or start the body: a line break,
a NUL or another control character in one is refused, and the message is held, not sent.
Names and subjects in any language still arrive as written."""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import pytest

from automator.emails import OutgoingEmail, build_email
from automator.errors import UnsafeHeaderError
from tests.conftest import utc

BCC_NAME = "Eve\r\nBcc: attacker@evil.test\r\n\r\nLog in at http://evil.test/"
HELD = "; the message is held, not sent"


def email_values(**changes: Any) -> dict[str, Any]:
    """What `build_email` is given for a message, with some of the values changed."""
    values: dict[str, Any] = {
        "sender": "Lotus Shop <hello@shop.example.com>",
        "to": "lan@example.com",
        "to_name": "Lan",
        "subject": "You left something in your cart",
        "text": "Hi Lan,\n",
        "html": "<p>Hi Lan,</p>\n",
        "message_id": "<179642548886.1.0.automator@shop.example.com>",
        "rule_id": "abandoned_cart",
        "date": utc("2026-11-20 04:00"),
        "list_unsubscribe_url": "https://shop.example.com/unsubscribe?email=lan%40example.com&token=ab12",
    }
    return {**values, **changes}


def email(**changes: Any) -> OutgoingEmail:
    """The email automator builds for a message, with some of its values changed."""
    return build_email(**email_values(**changes))


def parsed(built: OutgoingEmail) -> EmailMessage:
    message = message_from_bytes(built.data, policy=policy.strict)
    assert isinstance(message, EmailMessage)
    return message


def header_lines(built: OutgoingEmail, name: bytes) -> list[bytes]:
    """The lines a header is written on: its first, and its continuation lines."""
    lines = built.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(name + b":"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in b" \t"), len(lines))
    return lines[start:end]


def test_a_name_with_a_line_break_cannot_add_a_bcc() -> None:
    with pytest.raises(UnsafeHeaderError) as raised:
        email(to_name=BCC_NAME)

    assert str(raised.value) == (
        r"header To: the name 'Eve\r\nBcc: attacker@evil.test\r\n\r\nLog in at http://evil.test/'"
        " holds a line break" + HELD
    )


def test_a_subject_with_a_line_break_is_refused() -> None:
    with pytest.raises(UnsafeHeaderError, match=r"^header Subject: the subject 'Hi\\r\\nBcc: "):
        email(subject="Hi\r\nBcc: attacker@evil.test")


def test_a_nul_is_refused() -> None:
    with pytest.raises(UnsafeHeaderError) as raised:
        email(to_name="Lan\0Nguyễn")

    assert str(raised.value) == r"header To: the name 'Lan\x00Nguyễn' holds a NUL" + HELD


def test_a_c1_control_character_is_refused() -> None:
    with pytest.raises(UnsafeHeaderError) as raised:
        email(subject="Sale \x9b2J today")  # CSI: a terminal escape, in one byte

    assert str(raised.value) == (
        r"header Subject: the subject 'Sale \x9b2J today' holds the control character U+009B" + HELD
    )


@pytest.mark.parametrize("character", ["\x85", "\u2028", "\x0b"], ids=["NEL", "LINE SEPARATOR", "VT"])
def test_what_other_software_breaks_lines_at_counts_as_a_line_break(character: str) -> None:
    with pytest.raises(UnsafeHeaderError, match="holds a line break"):
        email(to_name=f"Eve{character}Bcc: attacker@evil.test")


@pytest.mark.parametrize(
    ("field", "header"),
    [
        ("sender", "From"),
        ("to", "To"),
        ("to_name", "To"),
        ("subject", "Subject"),
        ("message_id", "Message-ID"),
        ("rule_id", "X-Automator-Rule"),
        ("list_unsubscribe_url", "List-Unsubscribe"),
    ],
)
def test_every_header_refuses_a_line_break_whatever_its_source(field: str, header: str) -> None:
    with pytest.raises(UnsafeHeaderError, match=f"^header {header}: .* holds a line break"):
        email(**{field: "x\r\nBcc: attacker@evil.test"})


def test_a_tab_is_refused_too() -> None:
    with pytest.raises(UnsafeHeaderError, match="holds the control character U[+]0009"):
        email(to_name="Lan\tNguyễn")


def test_a_long_value_is_shown_cut_short() -> None:
    with pytest.raises(UnsafeHeaderError) as raised:
        email(subject="A" * 100 + "\n")

    assert str(raised.value) == f"header Subject: the subject '{'A' * 60}…' holds a line break" + HELD


def test_a_vietnamese_name_is_rfc_2047_encoded_and_reads_back_as_written() -> None:
    built = email(to_name="Nguyễn Thị Lan")

    assert header_lines(built, b"To")[0].startswith(b"To: =?utf-8?")
    assert built.data.isascii()
    [to] = parsed(built)["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Nguyễn Thị Lan", "lan@example.com")


def test_an_ascii_name_with_a_comma_stays_one_recipient() -> None:
    [to] = parsed(email(to_name="Walsh, Anna"))["To"].addresses

    assert (to.display_name, to.addr_spec) == ("Walsh, Anna", "lan@example.com")


@pytest.mark.parametrize(
    "name",
    [
        "Nguyễn Thị Minh Khai Hoàng Phương Thảo Lan",
        "Anna Maria Josephine Catherine Elizabeth Alexandra Victoria Beatrice Walsh",
    ],
)
def test_a_long_name_is_folded_within_78_characters_and_reads_back(name: str) -> None:
    built = email(to="anna.maria.walsh@mail.example.com", to_name=name)

    assert max(len(line) for line in header_lines(built, b"To")) <= 78
    # Decoded as RFC 2047 says (the space between two encoded words is no part of the text);
    # the email package's newer address parser keeps that space.
    to = str(message_from_bytes(built.data)["To"])
    assert parseaddr(str(make_header(decode_header(to)))) == (name, "anna.maria.walsh@mail.example.com")


def test_a_long_ascii_subject_is_folded_within_78_characters_and_reads_back() -> None:
    subject = "Renew your Premium plan early and save 15% on the next twelve months of Lotus Shop"

    built = email(subject=subject)

    assert len(header_lines(built, b"Subject")) == 2
    assert max(len(line) for line in header_lines(built, b"Subject")) <= 78
    assert parsed(built)["Subject"] == subject


def test_a_word_too_long_for_any_line_is_encoded_so_that_no_line_passes_998() -> None:
    subject = "Your order ORD-" + "A" * 1200 + " has shipped"
    name = "W" * 3000

    built = email(subject=subject, to_name=name)

    for header in (b"Subject", b"To"):
        assert max(len(line) for line in header_lines(built, header)) <= 78
    assert str(make_header(decode_header(str(message_from_bytes(built.data)["Subject"])))) == subject
    to = str(message_from_bytes(built.data)["To"])
    assert parseaddr(str(make_header(decode_header(to)))) == (name, "lan@example.com")


def test_the_date_header_is_the_send_time() -> None:
    date = parsed(email(date=utc("2026-11-20 04:00")))["Date"].datetime

    assert isinstance(date, datetime) and date == utc("2026-11-20 04:00")
