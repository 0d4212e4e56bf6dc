"""End to end through the real CLI with the file transport: what lands in the outbox."""

from __future__ import annotations

import asyncio
import json
import os
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from freezegun import freeze_time

from automator.emails import OutgoingEmail, new_message_id
from automator.errors import TemporaryDeliveryError
from automator.transports.file import FileTransport
from tests.conftest import cart, write_jsonl

VIETNAMESE_SUBJECT = "Bạn còn sản phẩm chưa thanh toán trong giỏ hàng"


def headers_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def header_line(raw: bytes, name: bytes) -> bytes:
    """A header with its folded continuation lines, as it is in the file."""
    lines = headers_of(raw).split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(name.lower() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return b"\r\n".join(lines[start:end])


def parse(path: Path) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
def outbox(project_dir: Path) -> Path:
    return project_dir / "outbox"


@pytest.fixture
def shop(cli, tmp_path: Path) -> None:
    """Two customers with an abandoned cart each, imported the way a shop would."""
    contacts = write_jsonl(
        tmp_path / "contacts.jsonl",
        [
            {"email": "lan@example.com", "first_name": "Lan", "last_name": "Nguyễn", "locale": "vi",
             "timezone": "Asia/Ho_Chi_Minh", "stage": "consideration"},
            {"email": "bob@example.com", "first_name": "Bob", "locale": "en",
             "timezone": "Asia/Ho_Chi_Minh", "stage": "consideration"},
        ],
    )  # fmt: skip
    events = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"id": "evt-1", "type": "cart_updated", "email": "lan@example.com",
             "at": "2026-11-20T03:00:00Z", "properties": cart("c1")},
            {"id": "evt-2", "type": "cart_updated", "email": "bob@example.com",
             "at": "2026-11-20T03:00:00Z", "properties": cart("c2", total=500_000)},
        ],
    )  # fmt: skip
    with freeze_time("2026-11-20 03:01:00"):
        assert cli("contacts", "import", str(contacts)).exit_code == 0
        assert cli("events", "import", str(events)).exit_code == 0


@pytest.fixture
def sent(shop, cli, outbox: Path) -> dict[str, Path]:
    """The outbox after `automator tick --now 04:00`, by recipient."""
    result = cli("tick", "--now", "2026-11-20T04:00:00Z")
    assert result.exit_code == 0, result.output
    return {parse(path)["To"].addresses[0].addr_spec: path for path in sorted(outbox.glob("*.eml"))}


def test_tick_writes_one_eml_file_per_sent_message(sent, outbox: Path):
    assert sorted(sent) == ["bob@example.com", "lan@example.com"]
    assert len(list(outbox.iterdir())) == 2  # no temporary files left behind


def test_eml_carries_from_to_date_message_id_and_rule(sent):
    email = parse(sent["lan@example.com"])

    assert email["From"] == "Lotus Shop <hello@shop.example.com>"
    assert email["To"] == "Lan Nguyễn <lan@example.com>"
    assert email["Date"].datetime.isoformat() == "2026-11-20T04:00:00+00:00"
    assert email["Message-ID"].strip().endswith("@shop.example.com>")
    assert email["X-Automator-Rule"] == "abandoned_cart"


def test_message_ids_differ_within_a_process_and_in_a_forked_child():
    sender = "Lotus Shop <hello@shop.example.com>"
    ids = {new_message_id(sender) for _ in range(1000)}
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, new_message_id(sender).encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)

    assert len(ids) == 1000
    assert all(re.fullmatch(r"<\d+\.\d{20}\.\d+\.automator@shop\.example\.com>", id_) for id_ in ids)
    # Each process draws its own random part: a fork does not repeat its parent's ids.
    assert from_child.split(".")[1] != next(iter(ids)).split(".")[1]


def test_vietnamese_subject_is_rfc2047_encoded_and_decodes_back(sent):
    raw = sent["lan@example.com"].read_bytes()

    assert b"=?utf-8?" in header_line(raw, b"Subject").lower()
    assert VIETNAMESE_SUBJECT.encode() not in headers_of(raw)
    assert parse(sent["lan@example.com"])["Subject"] == VIETNAMESE_SUBJECT


def test_list_unsubscribe_is_plain_with_an_https_link_and_a_mailto(sent):
    raw = sent["lan@example.com"].read_bytes()
    line = header_line(raw, b"List-Unsubscribe")

    assert b"=?" not in line
    assert b"<https://shop.example.com/unsubscribe?email=lan%40example.com&token=" in line
    assert b"<mailto:hello@shop.example.com?subject=unsubscribe>" in line
    assert header_line(raw, b"List-Unsubscribe-Post") == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"


def test_eml_is_multipart_alternative_with_text_and_html(sent):
    email = parse(sent["bob@example.com"])

    assert email.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in email.iter_parts()] == ["text/plain", "text/html"]


def test_vietnamese_text_part_shows_the_total_in_dong(sent):
    email = parse(sent["lan@example.com"])

    text = email.get_body(("plain",)).get_content()
    assert "1.250.000 ₫" in text
    assert "Áo dài lụa" in text


def test_running_tick_again_writes_no_new_file(sent, cli, outbox: Path):
    before = {path.name: path.read_bytes() for path in outbox.iterdir()}

    result = cli("tick", "--now", "2026-11-20T04:00:00Z")
    later = cli("tick", "--now", "2026-11-20T06:00:00Z")

    assert (result.exit_code, later.exit_code) == (0, 0)
    assert {path.name: path.read_bytes() for path in outbox.iterdir()} == before


def test_queue_list_json_shows_the_message_as_sent(sent, cli):
    result = cli("queue", "list", "--json", "--contact", "lan@example.com")

    [row] = json.loads(result.output)
    assert (row["rule"], row["status"], row["sent_at"]) == (
        "abandoned_cart",
        "sent",
        "2026-11-20T04:00:00+00:00",
    )
    assert row["message_id"] == parse(sent["lan@example.com"])["Message-ID"].strip()
    assert row["subject"] == VIETNAMESE_SUBJECT


@pytest.fixture
def vietnamese_sender_domain(environ, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 22-character sender domain: every Message-ID line is then 80–89 characters long, too long
    for one 78-character line and short enough to fit on a continuation line."""
    monkeypatch.setenv("AUTOMATOR_FROM", "Lotus Shop <hello@mail.lotus-shop.com.vn>")


def test_message_id_header_is_written_on_one_line_as_queued(vietnamese_sender_domain, sent, cli):
    [row] = json.loads(cli("queue", "list", "--json", "--contact", "lan@example.com").output)
    raw = sent["lan@example.com"].read_bytes()

    assert header_line(raw, b"Message-ID") == b"Message-ID: " + row["message_id"].encode()
    assert parse(sent["lan@example.com"])["Message-ID"] == row["message_id"]


def outgoing(n: int) -> OutgoingEmail:
    return OutgoingEmail(
        "news@shop.example", ("bob@example.com",), f"<{n}@shop.example>", b"Subject: hi\r\n\r\nhi\r\n"
    )


def test_file_transport_writes_a_batch_one_file_per_email(tmp_path: Path) -> None:
    outcomes = asyncio.run(FileTransport(tmp_path / "outbox").send_many([outgoing(1), outgoing(2)]))

    assert outcomes == [None, None]
    assert sorted(path.name for path in (tmp_path / "outbox").iterdir()) == [
        "1_shop.example.eml",
        "2_shop.example.eml",
    ]


def test_file_transport_reports_an_unwritable_outbox_for_each_email_of_a_batch(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("a file where the folder should be", encoding="utf-8")

    outcomes = asyncio.run(FileTransport(tmp_path / "outbox").send_many([outgoing(1), outgoing(2)]))

    assert [type(outcome) for outcome in outcomes] == [TemporaryDeliveryError, TemporaryDeliveryError]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_a_write_to_a_full_disk_leaves_no_temporary_file(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    # The temporary file's name leads to a device whose every write fails: the disk is full.
    (outbox / ".1_shop.example.eml.tmp").symlink_to("/dev/full")

    [outcome] = asyncio.run(FileTransport(outbox).send_many([outgoing(1)]))

    assert isinstance(outcome, TemporaryDeliveryError)
    assert "No space left on device" in str(outcome)
    assert list(outbox.iterdir()) == []
