"""The SMTP transport's TLS and AUTH: the password never goes in cleartext, certificates are checked.

Real aiosmtpd servers on 127.0.0.1 with a throw-away self-signed certificate; each records
every AUTH it received and whether it came over TLS.
"""

# The fixtures are imported below, so every test parameter "redefines" them.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest

from automator.emails import OutgoingEmail
from automator.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from automator.transports.smtp import SmtpTransport
from automator.transports.smtp_errors import SmtpDeliveryError, SmtpInsecureError
from automator.transports.smtp_settings import SmtpSettings
from tests.smtp_server import (  # noqa: F401
    AuthSmtpServer,
    Certificate,
    Login,
    LoopbackSmtpServer,
    TlsMode,
    certificate,
    smtp_server,
)

OVER_TLS = Login(AuthSmtpServer.USERNAME, AuthSmtpServer.PASSWORD, over_tls=True)
IN_CLEARTEXT = Login(AuthSmtpServer.USERNAME, AuthSmtpServer.PASSWORD, over_tls=False)


def make_email() -> OutgoingEmail:
    message = EmailMessage()
    message["From"] = "Shop <news@shop.example>"
    message["To"] = "bob@example.com"
    message["Subject"] = "Welcome"
    message["Message-ID"] = "<msg-1@shop.example>"
    message.set_content("Hello Bob.\n")
    return OutgoingEmail.from_message(message)


def deliver(url: str) -> None:
    """Sends one email through a transport for `url` (2 s per command), then closes it."""

    async def run() -> None:
        transport = SmtpTransport(SmtpSettings.from_url(url))
        try:
            await transport.send(make_email())
        finally:
            await transport.close()

    asyncio.run(run())


def delivery_error(url: str) -> SmtpDeliveryError:
    """The error one send raises (the test fails if it is delivered)."""
    with pytest.raises(SmtpDeliveryError) as caught:
        deliver(url)
    return caught.value


@contextmanager
def running(tls: TlsMode, certificate: Certificate | None = None) -> Iterator[AuthSmtpServer]:
    server = AuthSmtpServer(tls, certificate)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[AuthSmtpServer]:
    """Offers STARTTLS, and AUTH before and after it."""
    with running("starttls", certificate) as server:
        yield server


@pytest.fixture
def plaintext_server() -> Iterator[AuthSmtpServer]:
    """Offers AUTH but no STARTTLS."""
    with running("none") as server:
        yield server


@pytest.fixture
def smtps_server(certificate: Certificate) -> Iterator[AuthSmtpServer]:
    """Speaks TLS from the first byte."""
    with running("implicit", certificate) as server:
        yield server


def test_password_goes_over_starttls_when_the_server_offers_it(
    starttls_server: AuthSmtpServer, certificate: Certificate
) -> None:
    deliver(starttls_server.login_url(timeout=2, tls_ca=certificate.cert))

    assert starttls_server.logins == [OVER_TLS]
    assert starttls_server.mail_over_tls == [True]
    assert len(starttls_server.messages) == 1


def test_mail_goes_over_starttls_without_a_login_too(
    starttls_server: AuthSmtpServer, certificate: Certificate
) -> None:
    deliver(starttls_server.url(timeout=2, tls_ca=certificate.cert))

    assert starttls_server.mail_over_tls == [True]
    assert len(starttls_server.messages) == 1


def test_no_password_is_sent_to_a_server_without_starttls(plaintext_server: AuthSmtpServer) -> None:
    error = delivery_error(plaintext_server.login_url(timeout=2))

    assert plaintext_server.logins == []
    assert plaintext_server.messages == []
    assert isinstance(error, SmtpInsecureError)
    assert isinstance(error, TemporaryDeliveryError)  # retried later: the message is not lost
    assert not isinstance(error, PermanentDeliveryError)


def test_refused_cleartext_login_says_what_to_do_without_the_password(
    plaintext_server: AuthSmtpServer,
) -> None:
    error = delivery_error(plaintext_server.login_url(timeout=2))

    url = f"smtp://mailer%40shop.example:***@127.0.0.1:{plaintext_server.port}"
    assert str(error) == (
        f"the SMTP server at {url} did not offer STARTTLS; refusing to send the password in"
        " cleartext; use smtps:// or, on loopback only, ?insecure_auth=1"
    )
    assert AuthSmtpServer.PASSWORD not in str(error)


def test_insecure_auth_on_loopback_logs_in_without_tls(plaintext_server: AuthSmtpServer) -> None:
    deliver(plaintext_server.login_url(timeout=2, insecure_auth=1))

    assert plaintext_server.logins == [IN_CLEARTEXT]
    assert len(plaintext_server.messages) == 1


def test_required_starttls_fails_clearly_when_the_server_does_not_offer_it(
    smtp_server: LoopbackSmtpServer,
) -> None:
    error = delivery_error(smtp_server.url(timeout=2, starttls=1))

    assert isinstance(error, SmtpInsecureError)
    assert "did not offer STARTTLS, which the URL requires (starttls=1)" in str(error)
    assert smtp_server.messages == []


def test_smtps_delivers_over_tls_from_the_first_byte(
    smtps_server: AuthSmtpServer, certificate: Certificate
) -> None:
    deliver(smtps_server.login_url(timeout=2, tls_ca=certificate.cert))

    assert smtps_server.logins == [OVER_TLS]
    assert smtps_server.mail_over_tls == [True]
    assert len(smtps_server.messages) == 1


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_self_signed_certificate_is_refused_by_default(tls: TlsMode, certificate: Certificate) -> None:
    with running(tls, certificate) as server:
        error = delivery_error(server.login_url(timeout=2))

        assert server.logins == []
        assert server.messages == []
    assert isinstance(error, TemporaryDeliveryError)
    assert "the server's certificate did not verify" in str(error)
    assert "?tls_ca=/path/to/ca.pem" in str(error)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_verify_0_accepts_a_self_signed_certificate(tls: TlsMode, certificate: Certificate) -> None:
    with running(tls, certificate) as server:
        deliver(server.login_url(timeout=2, tls_verify=0))

        assert server.logins == [OVER_TLS]
        assert len(server.messages) == 1


def test_wrong_password_is_temporary_and_not_shown(
    starttls_server: AuthSmtpServer, certificate: Certificate
) -> None:
    error = delivery_error(starttls_server.login_url("wrong-secret", timeout=2, tls_ca=certificate.cert))

    assert isinstance(error, TemporaryDeliveryError)
    assert error.code == 535
    assert "wrong-secret" not in str(error)
    assert starttls_server.messages == []


@pytest.mark.parametrize("host", ["mail.example.com", "10.0.0.5", "[2001:db8::1]", "127.example.com"])
def test_insecure_auth_for_a_remote_host_is_a_config_error(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpSettings.from_url(f"smtp://mailer:hunter2@{host}:587?insecure_auth=1")

    message = str(caught.value)
    assert message.startswith("AUTOMATOR_SMTP_URL: invalid SMTP settings: insecure_auth=1 would send the")
    assert "only for a loopback host (127.0.0.1, ::1, localhost)" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LOCALHOST"])
def test_insecure_auth_is_allowed_for_a_loopback_host(host: str) -> None:
    settings = SmtpSettings.from_url(f"smtp://mailer:hunter2@{host}:25?insecure_auth=1")

    assert settings.insecure_auth


def test_tls_is_verified_by_default() -> None:
    settings = SmtpSettings.from_url("smtp://relay.example")

    assert (settings.tls_verify, settings.tls_ca, settings.insecure_auth) == (True, None, False)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("tls_verify=maybe", "option tls_verify='maybe' is not 1 or 0"),
        ("tls_verify=", "option tls_verify='' is not 1 or 0 (or true/false, yes/no, on/off)"),
        ("insecure_auth=perhaps", "option insecure_auth='perhaps' is not 1 or 0"),
        ("tls_ca=", "option tls_ca='' is not a path to a PEM file of CA certificates"),
        ("tls_ca=/nonexistent/ca.pem", "tls_ca=/nonexistent/ca.pem: no such file"),
        ("tls_cert=/x.pem", "unknown option 'tls_cert'"),
    ],
)
def test_bad_tls_option_names_the_parameter(query: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpSettings.from_url(f"smtp://mailer:hunter2@relay.example?{query}")

    message = str(caught.value)
    assert message.startswith("AUTOMATOR_SMTP_URL: ")
    assert problem in message
    assert "hunter2" not in message


def test_tls_ca_that_is_not_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello\n")

    with pytest.raises(ConfigError, match=f"tls_ca={not_pem}: not a readable PEM file of CA certificates"):
        SmtpSettings.from_url(f"smtp://relay.example?tls_ca={not_pem}")


def test_tls_ca_with_tls_verify_0_is_a_config_error(certificate: Certificate) -> None:
    with pytest.raises(ConfigError, match="tls_ca has no effect with tls_verify=0"):
        SmtpSettings.from_url(f"smtp://relay.example?tls_ca={certificate.cert}&tls_verify=0")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("smtp://mailer:hunter2@mail.example.com:587", "smtp://mailer:***@mail.example.com:587"),
        ("smtps://a%40b.example:p%40ss@[::1]", "smtps://a%40b.example:***@[::1]:465"),
        ("smtp://relay.example", "smtp://relay.example:25"),
    ],
)
def test_masked_url_hides_the_password(url: str, masked: str) -> None:
    assert SmtpSettings.from_url(url).masked_url == masked
