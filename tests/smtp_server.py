"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), whose answers each test can script.

Use the `smtp_server` fixture (import it into a test module or conftest.py), set
`smtp_server.mode` / `fail_at` and read `smtp_server.messages` / `connections`.
`AuthSmtpServer` adds AUTH and TLS (STARTTLS or implicit) with a throw-away certificate from
the `certificate` fixture.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Mode = Literal["accept", "tempfail", "reject", "drop", "stall"]
Stage = Literal["rcpt", "data"]

TEMPFAIL_REPLY = "451 4.3.0 try again later"
REJECT_REPLY = "550 5.1.1 no such user"
REJECT_DATA_REPLY = "554 5.6.0 message content rejected"


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted: its envelope, its bytes and the parsed email."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


class ScriptedHandler:
    """aiosmtpd hooks that answer according to `mode`, and count what they see.

    accept: 250 and record; tempfail: 451 at `fail_at`; reject: 5xx at `fail_at`;
    drop: close the socket during DATA without a reply; stall: sit on DATA for `stall_seconds`.
    Runs on the server thread's event loop; the counters are only written there.
    """

    def __init__(self) -> None:
        self.mode: Mode = "accept"
        self.fail_at: Stage = "rcpt"
        self.stall_seconds = 3.0
        self.hold_seconds = 0.0
        self.messages: list[ReceivedMessage] = []
        self.connections = 0
        self.quits = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.sessions: list[SMTP] = []

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        self.sessions.append(server)
        session.host_name = hostname  # aiosmtpd leaves this to an EHLO hook; MAIL needs it
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.fail_at == "rcpt" and self.mode == "tempfail":
            return TEMPFAIL_REPLY
        if self.fail_at == "rcpt" and self.mode == "reject":
            return REJECT_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer_data(server, envelope)
        finally:
            self.in_flight -= 1

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    async def _answer_data(self, server: SMTP, envelope: Envelope) -> str:
        if self.fail_at == "data" and self.mode == "tempfail":
            return TEMPFAIL_REPLY
        if self.fail_at == "data" and self.mode == "reject":
            return REJECT_DATA_REPLY
        if self.mode == "drop":
            assert server.transport is not None
            server.transport.close()
            # connection_lost() cancels this hook on the next loop turn; the sleep is only a bound.
            await asyncio.sleep(self.stall_seconds)
            return "421 4.4.2 closing connection"
        if self.mode == "stall":
            await asyncio.sleep(self.stall_seconds)
        await asyncio.sleep(self.hold_seconds)
        self.messages.append(_received(envelope))
        return "250 OK queued"


def _received(envelope: Envelope) -> ReceivedMessage:
    raw = envelope.original_content or b""
    # Parse with the wire's CRLFs turned into Python's newlines, as a mail client would.
    parsed = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos), raw, parsed)


class LoopbackSmtpServer(ScriptedHandler):
    """An aiosmtpd Controller on 127.0.0.1 and a free port, answering through its own hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.host = "127.0.0.1"
        self.port = free_port()
        self._controller = Controller(self, hostname=self.host, port=self.port)

    def url(self, **options: object) -> str:
        """`smtp://127.0.0.1:<port>` with the given query options."""
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"smtp://{self.host}:{self.port}" + (f"?{query}" if query else "")

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def close_client_connections(self) -> None:
        """Hangs up on every client, as a server does to idle sessions; returns once done."""
        done = threading.Event()

        def hang_up() -> None:
            for session in self.sessions:
                if session.transport is not None:
                    session.transport.close()
            done.set()

        self._controller.loop.call_soon_threadsafe(hang_up)
        assert done.wait(5), "the server thread did not close its connections"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[LoopbackSmtpServer]:
    """A started loopback SMTP server in `accept` mode, stopped after the test."""
    server = LoopbackSmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Certificate:
    """A throw-away self-signed certificate for 127.0.0.1 and localhost, and its private key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """The server side of TLS with this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(folder: Path) -> Certificate:
    """Generates a self-signed P-256 certificate, valid for a day, with openssl."""
    certificate = Certificate(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=automator test",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(certificate.key), "-out", str(certificate.cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return certificate


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """One self-signed certificate for the whole test run."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@dataclass(frozen=True)
class Login:
    """One AUTH that reached the server: the credentials, and whether they came over TLS."""

    username: str
    password: str
    over_tls: bool


TlsMode = Literal["starttls", "implicit", "none"]


class AuthSmtpServer(LoopbackSmtpServer):
    """A loopback server that takes AUTH even on plaintext (as a careless relay would) and offers
    TLS as `tls` says: STARTTLS, TLS from the first byte (implicit, smtps://), or none.

    `logins` records every AUTH that reached it; `mail_over_tls` says, for each MAIL FROM,
    whether the session was encrypted. Only USERNAME / PASSWORD log in.
    """

    USERNAME = "mailer@shop.example"
    PASSWORD = "s3cret:pa55"

    def __init__(self, tls: TlsMode, certificate: Certificate | None = None) -> None:
        super().__init__()
        self.scheme = "smtps" if tls == "implicit" else "smtp"
        self.logins: list[Login] = []
        self.mail_over_tls: list[bool] = []
        context = certificate.server_context() if certificate is not None else None
        self._controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            tls_context=context if tls == "starttls" else None,
            ssl_context=context if tls == "implicit" else None,
            authenticator=self._authenticate,
            auth_require_tls=False,
        )

    def url(self, **options: object) -> str:
        """`smtp://` or `smtps://127.0.0.1:<port>` with the given query options, no login."""
        return self.scheme + super().url(**options).removeprefix("smtp")

    def login_url(self, password: str = PASSWORD, **options: object) -> str:
        """The URL with USERNAME and `password` (escaped as the URL needs)."""
        login = f"{quote(self.USERNAME, safe='')}:{quote(password, safe='')}@"
        return self.url(**options).replace("://", "://" + login, 1)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mail_over_tls.append(_over_tls(server))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = Login(data.login.decode(), data.password.decode(), _over_tls(server))
        self.logins.append(login)
        valid = (login.username, login.password) == (self.USERNAME, self.PASSWORD)
        return AuthResult(success=valid, handled=False)  # handled=False: aiosmtpd replies 535


def _over_tls(server: SMTP) -> bool:
    """Whether the server's session with this client is encrypted (STARTTLS or implicit TLS)."""
    return server.transport is not None and server.transport.get_extra_info("sslcontext") is not None
