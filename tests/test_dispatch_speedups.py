"""The email automator writes by hand (for speed) is the email the standard library would
write: parsed back, it has the same headers and the same bodies. The shortcuts that make
it cheap (base64 cut into lines in one call, a pre-keyed HMAC, an address that needs no
quoting) give what the general way gives."""

from __future__ import annotations

import base64
import hmac
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import quote

import pytest

from automator import emails
from automator.emails import build_email, unsubscribe_token, unsubscribe_url
from tests.test_email_headers import email_values

# Bodies whose base64 ends inside a line or at a line's end (57 bytes make a line); each
# ends with a line break, as the email package makes every text body end.
BODIES = ["Hi\n", *("x" * size + "\n" for size in (55, 56, 57, 113)), "Chào Lan, giỏ hàng đang chờ.\n" * 40]


def values(**changes: Any) -> dict[str, Any]:
    return email_values(**{"variant": None, **changes})


def by_the_stdlib(value: dict[str, Any]) -> EmailMessage:
    """The same email as the email package builds it, without any of automator's shortcuts
    (written with `emails.POLICY`, the email package's SMTP policy that folds URL lists whole)."""
    message = EmailMessage()
    message["From"] = value["sender"]
    message["To"] = formataddr((value["to_name"], value["to"])) if value["to_name"] else value["to"]
    message["Subject"] = value["subject"]
    message["Date"] = format_datetime(value["date"])
    message["Message-ID"] = value["message_id"]
    message["X-Automator-Rule"] = value["rule_id"]
    if value["variant"] is not None:
        message["X-Automator-Variant"] = value["variant"]
    mailto = "mailto:hello@shop.example.com?subject=unsubscribe"
    message["List-Unsubscribe"] = f"<{value['list_unsubscribe_url']}>, <{mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(value["text"], cte="base64")
    message.add_alternative(value["html"], subtype="html", cte="base64")
    return message


def read_back(data: bytes) -> EmailMessage:
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def headers(data: bytes) -> dict[str, str]:
    """Each header as a reader shows it: encoded words decoded and joined as RFC 2047 says
    (`email.header`; the header registry's parser puts a space between some), folding and
    runs of spaces made one space."""
    message = message_from_bytes(data)  # compat32: the raw values
    shown = {name: " ".join(str(make_header(decode_header(raw))).split()) for name, raw in message.items()}
    assert len(shown) == len(message.items()), "a header is there twice"
    return shown


def same_email(ours: bytes, theirs: bytes) -> None:
    """The same headers (decoded) and the same parts, with the same decoded bodies."""
    our_headers, their_headers = headers(ours), headers(theirs)
    del our_headers["Content-Type"], their_headers["Content-Type"]  # the boundaries differ
    assert our_headers == their_headers
    mine, stdlib = read_back(ours), read_back(theirs)
    assert mine.get_content_type() == stdlib.get_content_type() == "multipart/alternative"
    our_parts, their_parts = list(mine.iter_parts()), list(stdlib.iter_parts())
    assert [p.get_content_type() for p in our_parts] == [p.get_content_type() for p in their_parts]
    for part, same in zip(our_parts, their_parts, strict=True):
        assert part.get_content_charset() == "utf-8"
        assert part.get_content() == same.get_content()


@pytest.mark.parametrize("text", BODIES)
def test_the_email_reads_back_as_the_standard_librarys(text: str) -> None:
    value = values(text=text, html=f"<p>{text}</p>\n")

    built = build_email(**value)

    same_email(built.data, by_the_stdlib(value).as_bytes(policy=emails.POLICY))


@pytest.mark.parametrize(
    "changes",
    [
        {"to_name": "Nguyễn Thị Minh Khai", "subject": "Lan ơi, giỏ hàng 1.250.000 ₫ đang chờ"},
        {"to_name": "O'Brien, Anna", "subject": "Your cart " + "is waiting " * 12},
        {"to_name": None, "variant": "b"},
        # A name of several encoded words is left out: the email package drops the space
        # between two of them (test_dispatch_letters checks that ours read back as written).
        {"to_name": "Hoàng Phương Thảo", "subject": " ".join(["日本語 😀"] * 20)},
    ],
)
def test_names_subjects_and_variants_read_back_as_the_standard_librarys(changes: dict[str, Any]) -> None:
    value = values(**changes)

    same_email(build_email(**value).data, by_the_stdlib(value).as_bytes(policy=emails.POLICY))


@pytest.mark.parametrize("size", [*range(0, 180), 4_500, 4_503])
def test_base64_lines_are_the_standard_librarys(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)

    expected = base64.encodebytes(data[:size]).replace(b"\n", b"\r\n").removesuffix(b"\r\n")

    assert emails._base64_lines(data[:size]) == expected


def test_each_email_has_a_boundary_of_its_own() -> None:
    first, second = build_email(**values()), build_email(**values())

    assert read_back(first.data).get_boundary() != read_back(second.data).get_boundary()


@pytest.mark.parametrize("address", ["lan@example.com", "Lan.Le@Example.COM", "a+b@example.com", "tú@ví.vn"])
def test_the_unsubscribe_token_is_the_hmac_of_the_address(address: str) -> None:
    secret = "bench-secret-bench-secret-bench-secret"

    expected = hmac.digest(secret.encode(), address.lower().encode(), "sha256").hex()[:32]

    assert unsubscribe_token(secret, address) == expected
    assert unsubscribe_token("another-secret-another-secret-another", address) != expected


ADDRESSES = ["lan@example.com", "a_b.c-d~e@example.com", "a+b@example.com", "50%@x.com", "tú@ví.vn", "a b@x"]


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_unsubscribe_link_quotes_the_address_as_quote_does(address: str) -> None:
    url = unsubscribe_url("https://shop.example.com/", "secret", address)

    quoted = "%40".join(map(quote, address.split("@")))
    token = unsubscribe_token("secret", address)
    assert url == f"https://shop.example.com/unsubscribe?email={quoted}&token={token}"


@pytest.mark.parametrize("name", ["Lan\u00a0Nguyễn", "Lan\u200bAnh", "Lan\u3000Anh"])
def test_a_name_with_a_character_that_is_not_printable_but_safe_still_goes(name: str) -> None:
    built = build_email(**values(to_name=name))

    assert name in str(read_back(built.data)["To"])
