"""Names and subjects in any language, encoded for the headers: every one reads back as
written, in lines of at most 78 characters, whatever its length and characters."""

from __future__ import annotations

import random
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.utils import parseaddr

import pytest

from automator.emails import build_email
from tests.conftest import utc

LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxyỳỹỷỵáàảãạấầẩẫậ 日本語😀éß-"


def built(name: str, subject: str) -> bytes:
    return build_email(
        sender="Lotus Shop <hello@shop.example.com>",
        to="lan@example.com",
        to_name=name,
        subject=subject,
        text="Hi\n",
        html="<p>Hi</p>\n",
        message_id="<1.automator@shop.example.com>",
        rule_id="abandoned_cart",
        date=utc("2026-11-20 04:00"),
        list_unsubscribe_url="https://shop.example.com/unsubscribe?email=lan%40example.com&token=ab",
    ).data


def header_lines(data: bytes, name: bytes) -> list[bytes]:
    """The lines a header is written on: its first, and its continuation lines."""
    lines = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(name + b":"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in b" \t"), len(lines))
    return lines[start:end]


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("seed", range(20))
def test_any_name_and_subject_read_back_as_written_within_78_characters(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        name = words("".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 90)))) or "Lan"
        subject = words("".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 200)))) or "Hi"

        data = built(name, subject)

        assert data.isascii()
        assert max(len(line) for line in header_lines(data, b"To") + header_lines(data, b"Subject")) <= 78
        assert words(str(message_from_bytes(data, policy=policy.default)["Subject"])) == subject
        to = str(make_header(decode_header(str(message_from_bytes(data)["To"]))))
        shown, address = parseaddr(to)
        assert address == "lan@example.com"
        assert words(shown) == name or name.isascii()  # an ASCII name may be quoted


def test_a_character_is_never_split_between_two_encoded_words() -> None:
    name = "Nguyễn Thị Minh Khai Hoàng Phương Thảo Lan Nguyễn Thị Minh Khai Hoàng Phương Thảo"

    data = built(name, "Hi")

    for word in message_from_bytes(data)["To"].split():
        if word.startswith("=?"):
            [(raw, charset)] = decode_header(word.rstrip(","))
            assert isinstance(raw, bytes) and charset == "utf-8"
            raw.decode("utf-8")  # each word on its own is whole characters
