"""The file outbox as the dispatcher fills it: one file per email, named by its Message-ID,
written through a temporary file, so a resend replaces the file instead of adding one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from automator.emails import OutgoingEmail
from automator.transports.file import FileTransport


def outgoing(n: int, body: bytes = b"hi") -> OutgoingEmail:
    return OutgoingEmail(
        "news@shop.example", ("bob@example.com",), f"<{n}@shop.example>", b"Subject: hi\r\n\r\n" + body
    )


def test_the_outbox_folder_is_made_when_missing(tmp_path: Path) -> None:
    outbox = tmp_path / "not" / "there" / "yet"

    outcomes = asyncio.run(FileTransport(outbox).send_many([outgoing(1), outgoing(2)]))

    assert outcomes == [None, None]
    assert sorted(path.name for path in outbox.iterdir()) == ["1_shop.example.eml", "2_shop.example.eml"]


def test_a_resend_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path / "outbox")
    asyncio.run(transport.send_many([outgoing(1, b"first")]))

    asyncio.run(transport.send_many([outgoing(1, b"again")]))

    [written] = (tmp_path / "outbox").iterdir()
    assert written.read_bytes().endswith(b"again")


def test_a_batch_bigger_than_a_turn_of_the_event_loop_reports_every_email(tmp_path: Path) -> None:
    heard: list[int] = []

    outcomes = asyncio.run(
        FileTransport(tmp_path / "outbox").send_many(
            [outgoing(n) for n in range(120)], lambda index, _outcome: heard.append(index)
        )
    )

    assert outcomes == [None] * 120
    assert heard == list(range(120))
    assert len(list((tmp_path / "outbox").iterdir())) == 120
