"""Build the RFC 5322 email for a queued message, and sign unsubscribe links."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import itertools
import os
import re
import secrets
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import EmailPolicy, default
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from urllib.parse import quote

from automator.errors import UnsafeHeaderError


class _Policy(EmailPolicy):
    """SMTP policy that folds URL-list headers between their entries instead of RFC 2047-
    encoding a long URL, which would break List-Unsubscribe in every mail client."""

    URL_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id"})

    def fold(self, name: str, value: str) -> str:
        if name.lower() in self.URL_HEADERS:
            return f"{name}: " + str(value).replace(", <", f",{self.linesep} <") + self.linesep
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in self.URL_HEADERS:
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


POLICY = _Policy(linesep="\r\n")  # what email.policy.SMTP is, plus the folding above
MAX_LINE = 78  # RFC 5322's limit for a header line, without its CRLF
HARD_LINE = 998  # and the one no line may pass


def new_message_id(sender: str) -> str:
    """A Message-ID fixed when the message is queued, so a resend carries the same one.

    Shaped as `email.utils.make_msgid` shapes them (the time in 1/100 s, a random number,
    "automator", the sender's domain), at a tenth of its cost, which queueing pays for every
    message: the random number is drawn once per process (a forked child draws its own), and
    a counter keeps apart the ids one process makes in the same 1/100 s."""
    return f"<{int(time.time() * 100)}.{_process_token:020d}.{next(_ids)}.automator@{_domain(sender)}>"


_ids = itertools.count()
_process_token = secrets.randbits(64)


def _draw_process_token() -> None:
    global _process_token
    _process_token = secrets.randbits(64)


os.register_at_fork(after_in_child=_draw_process_token)


@functools.lru_cache(maxsize=16)
def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "automator.local"


def unsubscribe_token(secret: str, email: str) -> str:
    """An HMAC over the address: only automator can make one, so a forged link is refused."""
    signer = _signer(secret).copy()
    signer.update(email.lower().encode())
    return signer.hexdigest()[:32]


@functools.lru_cache(maxsize=4)  # the secret, and the previous ones a check goes through
def _signer(secret: str) -> hmac.HMAC:
    """The HMAC keyed with `secret`, copied for each address: keying it anew (and finding
    SHA-256 by its name) cost more than the signing."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def token_is_valid(secret: str, email: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(secret, email).encode(), token.encode("utf-8", "replace"))


def unsubscribe_url(base_url: str, secret: str, email: str) -> str:
    token = unsubscribe_token(secret, email)
    if _QUOTED_AS_IS.fullmatch(email):  # as quote() would write it, "@" escaped as %40
        address = email.replace("@", "%40")
    else:
        address = "%40".join(map(quote, email.split("@")))
    return f"{base_url.rstrip('/')}/unsubscribe?email={address}&token={token}"


# What quote() leaves as it is (letters, digits, "_.-~" and "/"), and "@".
_QUOTED_AS_IS = re.compile(r"[A-Za-z0-9_.~/@-]*")


@dataclass(frozen=True)
class OutgoingEmail:
    """What a transport delivers: the envelope and the RFC 5322 bytes (CRLF line ends)."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes

    @classmethod
    def from_message(cls, message: Message) -> OutgoingEmail:
        """Wrap an email built elsewhere (tests, benchmarks)."""
        recipients = tuple(a for _, a in getaddresses([str(v) for v in message.get_all("To", [])]) if a)
        return cls(
            parseaddr(str(message["From"] or ""))[1],
            recipients,
            str(message["Message-ID"] or ""),
            message.as_bytes(policy=POLICY),
        )

    def parsed(self) -> EmailMessage:
        """The email as a modern EmailMessage (for tests and previews; slow on purpose-built paths)."""
        parsed = message_from_bytes(self.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def build_email(
    *,
    sender: str,
    to: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    rule_id: str,
    date: datetime,
    list_unsubscribe_url: str,
    variant: str | None = None,
) -> OutgoingEmail:
    """A multipart/alternative email; non-ASCII headers are RFC 2047-encoded, URLs never are.

    Raises UnsafeHeaderError when a header value (the contact's name, the subject, any other)
    holds a line break or another control character: nothing that comes from a contact, a
    template or a setting can add a header (a Bcc) or start the body.

    `variant` is the message's A/B variant: X-Automator-Variant tells which version a
    recipient got, so that replies and complaints can be traced to it.

    The two-part MIME layout is written directly: the email package's generator costs more
    than a millisecond per message, which would be most of the dispatch time. Encoding
    (RFC 2047 words, base64) is still the standard library's.
    """
    boundary = _new_boundary()
    envelope_sender = _address_of(sender)
    head = (
        f"From: {_address(sender)}\r\n"
        f"To: {_recipient(to_name, to)}\r\n"
        f"Subject: {_encoded(_safe('Subject', 'the subject', subject), 'Subject')}\r\n"
        f"Date: {_date(date)}\r\n"
        f"Message-ID: {_safe('Message-ID', 'the id', message_id)}\r\n"
        f"X-Automator-Rule: {_safe('X-Automator-Rule', 'the rule id', rule_id)}\r\n"
        f"{_variant(variant)}"
        f"List-Unsubscribe: <{_safe('List-Unsubscribe', 'the URL', list_unsubscribe_url)}>,\r\n"
        f" <{_mailto(envelope_sender)}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
    )
    parts = [head.encode("ascii")]
    for subtype, content in (("plain", text), ("html", html)):
        parts.append(
            f'\r\n--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n".encode("ascii")
        )
        parts += [_base64_lines(content.encode("utf-8")), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return OutgoingEmail(envelope_sender, (to,), message_id, b"".join(parts))


def _variant(variant: str | None) -> str:
    """The X-Automator-Variant header line, or nothing for a message without a variant."""
    if variant is None:
        return ""
    return f"X-Automator-Variant: {_safe('X-Automator-Variant', 'the variant', variant)}\r\n"


def _new_boundary() -> str:
    """A MIME boundary of 32 hex digits, unique to this process and email (no base64 line can
    hold one: `=_` is in no base64 text). No random number per email: the system call that
    draws one cost a tenth of building the email."""
    return f"=_automator_{_process_token:016x}{next(_boundaries):016x}"


_boundaries = itertools.count()
BASE64_LINE = 76  # characters: 57 bytes, as `base64.encodebytes` breaks them


def _base64_lines(data: bytes) -> bytes:
    """Base64 in lines of 76 characters joined by CRLF, as `base64.encodebytes` breaks them,
    without a line break after the last. The whole lines are cut in one call (`struct`)
    rather than sliced one by one, which cost more than the encoding."""
    encoded = binascii.b2a_base64(data, newline=False)
    whole, rest = divmod(len(encoded), BASE64_LINE)
    lines = _line_cutter(whole).unpack_from(encoded)
    if rest:
        lines += (encoded[len(encoded) - rest :],)
    return b"\r\n".join(lines)


@functools.lru_cache(maxsize=64)  # bodies of one template are of a few lengths (in lines)
def _line_cutter(lines: int) -> struct.Struct:
    return struct.Struct(f"{BASE64_LINE}s" * lines)


@functools.lru_cache(maxsize=16)  # a dispatch pass dates all its emails with the same `now`
def _date(date: datetime) -> str:
    return format_datetime(date)


@functools.lru_cache(maxsize=16)
def _mailto(address: str) -> str:
    return f"mailto:{address}?subject=unsubscribe"


@functools.lru_cache(maxsize=16)
def _address_of(sender: str) -> str:
    return parseaddr(sender)[1]


@functools.lru_cache(maxsize=16)  # the sender is constant
def _address(value: str) -> str:
    name, address = parseaddr(_safe("From", "the sender", value))
    return _named(name, address, "From") if name else address


def _recipient(name: str | None, address: str) -> str:
    """The To header's value: the address, after the contact's name when it has one."""
    _safe("To", "the address", address)
    return _named(_safe("To", "the name", name), address, "To") if name else address


def _named(name: str, address: str, header: str) -> str:
    """`Name <address>`, the name quoted as needed or RFC 2047-encoded when not ASCII, folded
    before the address when the line would be too long."""
    if name.isascii() and _foldable(name, len(header) + 2):
        return _folded(formataddr((name, address)), len(header) + 2)
    encoded = _encoded(name, header)
    last = encoded.rpartition("\n")[2]
    end = len(last) + (len(header) + 2 if last == encoded else 0) + len(address) + 3
    space = " " if end <= MAX_LINE else "\r\n "
    return f"{encoded}{space}<{address}>"


@functools.lru_cache(maxsize=4096)
def _encoded(value: str, header: str) -> str:
    """RFC 2047 encoded words (folded at 78 characters) for non-ASCII text; ASCII as it is,
    folded at its spaces when long, unless a word of it is too long for any line."""
    if value.isascii() and _foldable(value, len(header) + 2):
        return _folded(value, len(header) + 2)
    return _encoded_words(value, len(header) + 2)


def _foldable(text: str, column: int) -> bool:
    """Whether folding `text` at its spaces keeps every line within RFC 5322's hard limit
    (998 characters): a longer line (a word of 1,000 letters in a subject) is refused by
    SMTP servers for good, and encoded words can be split anywhere."""
    return column + 2 + max(len(word) for word in text.split(" ")) <= HARD_LINE


WORD_BYTES = 45  # UTF-8 bytes in a whole encoded word: 60 base64 characters, a word of 72


def _encoded_words(text: str, column: int) -> str:
    """`text` as RFC 2047 "B" encoded words of its UTF-8, one a line, each holding whole
    characters and no longer than 75, the first fitting after the header's name (`column`)
    within 78. The email package's `Header` does this at a twentieth of the speed, and a
    name or a subject of its own is encoded for nearly every message."""
    data = text.encode()
    room = (MAX_LINE - column - len("=?utf-8?b??=")) // 4 * 3  # the first line's bytes
    words, start = [], 0
    while start < len(data):
        end = min(start + max(room, 4), len(data))  # 4: the longest character fits
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a character
            end -= 1
        encoded = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{encoded}?=")
        start, room = end, WORD_BYTES
    return "\r\n ".join(words)


def _folded(text: str, column: int) -> str:
    """`text` with CRLF before some of its spaces, so that its lines end by column 78 as far as
    its words allow; a reader removes the CRLFs and has `text` back (RFC 5322 folding).
    `column` is where `text` starts on the header's first line."""
    if column + len(text) <= MAX_LINE:
        return text
    first, *words = text.split(" ")
    lines = [first]
    width = column + len(first)
    for word in words:
        if word and width + 1 + len(word) > MAX_LINE and lines[-1].strip():
            lines.append(" " + word)  # never a line of white space only
            width = 1 + len(word)
        else:
            lines[-1] += " " + word
            width += 1 + len(word)
    return "\r\n".join(lines)


# What would end a header line (CR, LF, and what some software also breaks lines at: VT, FF,
# NEL, the Unicode line and paragraph separators), or is a control character that no header
# value holds (NUL, tab and the other C0 and C1 controls, DEL).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x85\u2028\u2029")


def _safe(header: str, what: str, value: str) -> str:
    """`value` for the header, unless it holds a line break or another control character:
    written out, the text after it would become another header (a Bcc) or the body."""
    if value.isprintable():  # no control character, no line break (the usual case, at once)
        return value
    found = _UNSAFE.search(value)
    if found is None:
        return value
    shown = value if len(value) <= 60 else value[:60] + "…"
    raise UnsafeHeaderError(
        f"header {header}: {what} {shown!r} holds {_kind(found[0])}; the message is held, not sent"
    )


def _kind(char: str) -> str:
    if char in _LINE_BREAKS:
        return "a line break"
    return "a NUL" if char == "\0" else f"the control character U+{ord(char):04X}"
