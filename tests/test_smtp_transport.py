"""The SMTP transport against a real loopback SMTP server (aiosmtpd)."""

# The `smtp_server` fixture is imported below, so every test parameter "redefines" it.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage

import pytest

from automator.emails import OutgoingEmail
from automator.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from automator.transports.smtp import SmtpTransport
from automator.transports.smtp_errors import SmtpDeliveryError
from automator.transports.smtp_settings import SmtpSettings
from tests.smtp_server import LoopbackSmtpServer, free_port, smtp_server  # noqa: F401


def make_email(to: str = "bob@example.com", subject: str = "Welcome", n: int = 0) -> OutgoingEmail:
    return OutgoingEmail.from_message(make_message(to, subject, n))


def make_message(to: str = "bob@example.com", subject: str = "Welcome", n: int = 0) -> EmailMessage:
    email = EmailMessage()
    email["From"] = "Shop <news@shop.example>"
    email["To"] = to
    email["Subject"] = subject
    email["Message-ID"] = f"<msg-{n}@shop.example>"
    email.set_content(f"Hello Bob, message {n}.\n")
    return email


def settings_for(server: LoopbackSmtpServer, **options: object) -> SmtpSettings:
    return SmtpSettings.from_url(server.url(**{"timeout": 2, **options}))


def deliver(settings: SmtpSettings, *emails: OutgoingEmail, together: bool = False) -> None:
    """Sends the emails through one transport, one by one or all at once, then closes it."""

    async def run() -> None:
        transport = SmtpTransport(settings)
        try:
            if together:
                await asyncio.gather(*(transport.send(email) for email in emails))
            else:
                for email in emails:
                    await transport.send(email)
        finally:
            await transport.close()

    asyncio.run(run())


def delivery_error(settings: SmtpSettings, email: OutgoingEmail) -> SmtpDeliveryError:
    """The error one send raises (the test fails if it is delivered)."""
    with pytest.raises(SmtpDeliveryError) as caught:
        deliver(settings, email)
    return caught.value


def test_accepted_message_arrives_with_its_headers(smtp_server: LoopbackSmtpServer) -> None:
    deliver(settings_for(smtp_server), make_email(to="Bob <bob@example.com>", n=7))

    [received] = smtp_server.messages
    assert received.mail_from == "news@shop.example"
    assert received.rcpt_tos == ["bob@example.com"]
    assert received.message["Subject"] == "Welcome"
    assert received.message["Message-ID"] == "<msg-7@shop.example>"
    assert received.message.get_content() == "Hello Bob, message 7.\n"


def test_non_ascii_subject_arrives_encoded(smtp_server: LoopbackSmtpServer) -> None:
    deliver(settings_for(smtp_server), make_email(subject="Café ☕ — 20 % off"))

    [received] = smtp_server.messages
    assert b"=?utf-8?" in received.raw.lower()
    assert "Café".encode() not in received.raw.split(b"\r\n\r\n")[0]
    assert received.message["Subject"] == "Café ☕ — 20 % off"


def test_4xx_is_a_temporary_failure_with_the_reply(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode = "tempfail"

    error = delivery_error(settings_for(smtp_server), make_email())

    assert isinstance(error, TemporaryDeliveryError)
    assert (error.code, error.reply) == (451, "4.3.0 try again later")
    assert "451 4.3.0 try again later" in str(error)
    assert smtp_server.messages == []


def test_4xx_for_the_data_is_temporary(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode, smtp_server.fail_at = "tempfail", "data"

    error = delivery_error(settings_for(smtp_server), make_email())

    assert isinstance(error, TemporaryDeliveryError)
    assert "451 4.3.0 try again later" in str(error)


def test_5xx_for_recipient_is_permanent(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode = "reject"

    error = delivery_error(settings_for(smtp_server), make_email())

    assert isinstance(error, PermanentDeliveryError)
    assert (error.code, error.reply) == (550, "5.1.1 no such user")
    assert "bob@example.com: 550 5.1.1 no such user" in str(error)


def test_5xx_for_the_data_is_permanent(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode, smtp_server.fail_at = "reject", "data"

    error = delivery_error(settings_for(smtp_server), make_email())

    assert isinstance(error, PermanentDeliveryError)
    assert "554 5.6.0 message content rejected" in str(error)


def test_message_without_recipients_is_permanent(smtp_server: LoopbackSmtpServer) -> None:
    message = make_message()
    del message["To"]

    error = delivery_error(settings_for(smtp_server), OutgoingEmail.from_message(message))

    assert isinstance(error, PermanentDeliveryError)
    assert error.code is None


def test_dropped_connection_is_temporary(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode = "drop"

    error = delivery_error(settings_for(smtp_server), make_email())

    assert isinstance(error, TemporaryDeliveryError)
    assert "dropped the connection" in str(error)
    assert smtp_server.messages == []


def test_stalled_server_times_out_as_temporary(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode = "stall"

    error = delivery_error(settings_for(smtp_server, timeout=0.5), make_email())

    assert isinstance(error, TemporaryDeliveryError)
    assert "timed out" in str(error)


def test_connection_refused_is_temporary() -> None:
    settings = SmtpSettings.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2")

    error = delivery_error(settings, make_email())

    assert isinstance(error, TemporaryDeliveryError)
    assert "cannot open a session with SMTP server 127.0.0.1" in str(error)


def test_connections_are_reused_across_messages(smtp_server: LoopbackSmtpServer) -> None:
    deliver(settings_for(smtp_server), *(make_email(n=n) for n in range(3)))

    assert len(smtp_server.messages) == 3
    assert smtp_server.connections == 1


def test_connection_with_an_error_is_not_reused(smtp_server: LoopbackSmtpServer) -> None:
    async def run() -> None:
        transport = SmtpTransport(settings_for(smtp_server))
        smtp_server.mode = "tempfail"
        with pytest.raises(TemporaryDeliveryError):
            await transport.send(make_email(n=1))
        smtp_server.mode = "accept"
        await transport.send(make_email(n=2))
        await transport.close()

    asyncio.run(run())

    assert len(smtp_server.messages) == 1
    assert smtp_server.connections == 2


def test_connection_the_server_hung_up_is_replaced(smtp_server: LoopbackSmtpServer) -> None:
    async def run() -> None:
        transport = SmtpTransport(settings_for(smtp_server))
        await transport.send(make_email(n=1))
        smtp_server.close_client_connections()
        await transport.send(make_email(n=2))
        await transport.close()

    asyncio.run(run())

    assert [m.message["Message-ID"] for m in smtp_server.messages] == [
        "<msg-1@shop.example>",
        "<msg-2@shop.example>",
    ]
    assert smtp_server.connections == 2


def test_concurrency_never_exceeds_limit(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.hold_seconds = 0.1  # long enough that sends would overlap if allowed to
    settings = settings_for(smtp_server, concurrency=3, pool_size=8)

    deliver(settings, *(make_email(n=n) for n in range(6)), together=True)

    assert len(smtp_server.messages) == 6
    assert smtp_server.max_in_flight == 3


def test_pool_size_caps_open_connections(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.hold_seconds = 0.1
    settings = settings_for(smtp_server, concurrency=8, pool_size=2)

    deliver(settings, *(make_email(n=n) for n in range(8)), together=True)

    assert len(smtp_server.messages) == 8
    assert smtp_server.connections == 2
    assert smtp_server.max_in_flight <= 2


def send_batch(settings: SmtpSettings, emails: list[OutgoingEmail]) -> list[BaseException | None]:
    """Sends the emails as one batch through one transport, then closes it."""

    async def run() -> list[BaseException | None]:
        transport = SmtpTransport(settings)
        try:
            return await transport.send_many(emails)
        finally:
            await transport.close()

    return asyncio.run(run())


def test_a_batch_reports_each_email_outcome_in_order(smtp_server: LoopbackSmtpServer) -> None:
    unaddressed = make_message(n=2)
    del unaddressed["To"]
    batch = [make_email(n=1), OutgoingEmail.from_message(unaddressed), make_email(n=3)]

    outcomes = send_batch(settings_for(smtp_server), batch)

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PermanentDeliveryError)
    assert sorted(m.message["Message-ID"] for m in smtp_server.messages) == [
        "<msg-1@shop.example>",
        "<msg-3@shop.example>",
    ]


def test_a_batch_keeps_to_the_concurrency_limit(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.hold_seconds = 0.1
    settings = settings_for(smtp_server, concurrency=3, pool_size=8)

    outcomes = send_batch(settings, [make_email(n=n) for n in range(6)])

    assert outcomes == [None] * 6
    assert smtp_server.max_in_flight == 3


def test_a_batch_rides_the_pooled_connections(smtp_server: LoopbackSmtpServer) -> None:
    outcomes = send_batch(settings_for(smtp_server, pool_size=2), [make_email(n=n) for n in range(10)])

    assert outcomes == [None] * 10
    assert smtp_server.connections == 2


def test_a_batch_failing_at_the_server_reports_every_email(smtp_server: LoopbackSmtpServer) -> None:
    smtp_server.mode = "tempfail"

    outcomes = send_batch(settings_for(smtp_server), [make_email(n=n) for n in range(3)])

    assert all(isinstance(outcome, TemporaryDeliveryError) for outcome in outcomes)


def test_a_batch_keeps_to_the_rate_limit(smtp_server: LoopbackSmtpServer) -> None:
    started = time.monotonic()

    outcomes = send_batch(settings_for(smtp_server, rate_limit=50), [make_email(n=n) for n in range(10)])

    assert outcomes == [None] * 10
    assert time.monotonic() - started >= 0.15  # 9 gaps of 1/50 s


def test_rate_limit_spaces_out_messages(smtp_server: LoopbackSmtpServer) -> None:
    settings = settings_for(smtp_server, rate_limit=50)
    started = time.monotonic()

    deliver(settings, *(make_email(n=n) for n in range(10)), together=True)

    assert len(smtp_server.messages) == 10
    assert time.monotonic() - started >= 0.15  # 9 gaps of 1/50 s


def test_close_quits_pooled_connections(smtp_server: LoopbackSmtpServer) -> None:
    deliver(settings_for(smtp_server), make_email())

    assert smtp_server.quits == 1


def test_smtp_url_parsing() -> None:
    settings = SmtpSettings.from_url(
        "smtp://mailer%40shop.example:p%40ss%2Fw0rd@127.0.0.1:1025"
        "?starttls=1&timeout=5&pool_size=2&concurrency=3&rate_limit=12.5"
    )

    assert settings == SmtpSettings(
        host="127.0.0.1",
        port=1025,
        username="mailer@shop.example",
        password="p@ss/w0rd",
        use_tls=False,
        start_tls=True,
        timeout=5.0,
        pool_size=2,
        concurrency=3,
        rate_limit=12.5,
    )


def test_smtp_url_defaults() -> None:
    settings = SmtpSettings.from_url("smtp://relay.example")

    assert (settings.port, settings.username, settings.password) == (25, None, None)
    assert (settings.use_tls, settings.start_tls) == (False, False)
    assert (settings.timeout, settings.pool_size, settings.concurrency) == (30, 4, 8)
    assert settings.rate_limit == 0


def test_smtps_url_means_implicit_tls_on_port_465() -> None:
    settings = SmtpSettings.from_url("smtps://relay.example")

    assert (settings.port, settings.use_tls, settings.start_tls) == (465, True, False)


def test_smtp_url_overrides_win() -> None:
    settings = SmtpSettings.from_url("smtp://relay.example?timeout=5", timeout=1.5)

    assert settings.timeout == 1.5


def test_password_stays_out_of_the_settings_repr() -> None:
    settings = SmtpSettings.from_url("smtp://user:hunter2@relay.example")

    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://relay.example", "scheme must be smtp:// or smtps://, not 'http'"),
        ("relay.example:25", "scheme must be smtp:// or smtps://"),
        ("smtp://", "no host given"),
        ("smtp://:25", "no host given"),
        ("smtp://relay.example:port", "port is not a number"),
        ("smtp://relay.example?timeout=soon", "option timeout='soon' is not a number of seconds"),
        ("smtp://relay.example?pool_size=two", "option pool_size='two' is not a whole number"),
        (
            "smtp://relay.example?starttls=maybe",
            "option starttls='maybe' is not 1 or 0 (or true/false, yes/no, on/off)",
        ),
        ("smtp://relay.example?starttls=", "option starttls='' is not 1 or 0"),
        ("smtp://relay.example?starttls=y", "option starttls='y' is not 1 or 0"),
        ("smtp://relay.example?tls=1", "unknown option 'tls'"),
        ("smtp://relay.example?concurrency=0", "concurrency must be at least 1"),
        ("smtps://relay.example?starttls=1", "cannot both be on"),
    ],
)
def test_bad_smtp_url_names_the_setting_and_the_fault(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpSettings.from_url(url)

    assert str(caught.value).startswith("AUTOMATOR_SMTP_URL: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("value", "required"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("ON", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_starttls_takes_the_common_spellings_of_yes_and_no(value: str, required: bool) -> None:
    assert SmtpSettings.from_url(f"smtp://relay.example?starttls={value}").start_tls is required


@pytest.mark.parametrize("timeout", ["nan", "NaN", "inf", "-inf", "0", "-5"])
def test_timeout_that_is_not_a_positive_number_of_seconds_is_refused(timeout: str) -> None:
    with pytest.raises(
        ConfigError, match="AUTOMATOR_SMTP_URL: .*timeout must be a number of seconds above 0"
    ):
        SmtpSettings.from_url(f"smtp://relay.example?timeout={timeout}")


@pytest.mark.parametrize("rate_limit", ["nan", "inf", "-1"])
def test_rate_limit_that_is_not_a_finite_rate_is_refused(rate_limit: str) -> None:
    with pytest.raises(
        ConfigError, match="AUTOMATOR_SMTP_URL: .*rate_limit must be a number of messages per second"
    ):
        SmtpSettings.from_url(f"smtp://relay.example?rate_limit={rate_limit}")


def test_bad_smtp_url_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpSettings.from_url("smtp://user:hunter2@relay.example?timeout=x")

    assert "hunter2" not in str(caught.value)
