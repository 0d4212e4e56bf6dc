"""Where and how to reach the SMTP relay: `SmtpSettings`, read from an `smtp[s]://` URL
(`AUTOMATOR_SMTP_URL`) and checked as a whole when made, so that a set-up that cannot work
(AUTH in cleartext to another host, smtps with STARTTLS, a missing CA file) is refused at
start-up, naming the option, instead of at the first send."""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from automator.errors import ConfigError

URL_SETTING = "AUTOMATOR_SMTP_URL"
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
# A flag's spellings, compared case-insensitively; an empty value is none of them, so that
# `tls_verify=` cannot turn the certificate checks off by accident.
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_FLAG = "1 or 0 (or true/false, yes/no, on/off)"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP relay, and how hard to push it."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # smtps://: TLS from the first byte
    start_tls: bool = False  # require STARTTLS; without it STARTTLS is still used whenever offered
    insecure_auth: bool = False  # allow AUTH without TLS (loopback hosts only)
    tls_verify: bool = True
    tls_ca: str | None = None  # a PEM file of CA certificates trusted besides the system's
    timeout: float = 30.0
    pool_size: int = 4
    concurrency: int = 8
    rate_limit: float = 0.0

    def __post_init__(self) -> None:
        problem = _settings_problem(self)
        if problem:
            raise ConfigError(f"invalid SMTP settings: {problem}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> SmtpSettings:
        """Parses `smtp[s]://user:pass@host:port?starttls=1&timeout=10`, then applies overrides."""
        try:
            return cls(**{**_url_fields(url), **overrides})
        except ConfigError as exc:
            raise ConfigError(f"{URL_SETTING}: {exc}") from exc

    @property
    def connections(self) -> int:
        """How many emails go out at once: one per pooled connection, within the concurrency."""
        return min(self.pool_size, self.concurrency)

    @property
    def masked_url(self) -> str:
        """The relay's URL with the password shown as `***`, fit for errors and logs."""
        scheme = "smtps" if self.use_tls else "smtp"
        user = quote(self.username, safe="") if self.username is not None else ""
        secret = ":***" if self.password else ""
        login = f"{user}{secret}@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{login}{host}:{self.port}"


def _settings_problem(settings: SmtpSettings) -> str | None:
    """Names the first value that cannot work, or None when all are usable."""
    if not settings.host:
        return "no host given"
    return _tls_problem(settings) or _capacity_problem(settings)


def _tls_problem(settings: SmtpSettings) -> str | None:
    """Names the first TLS or AUTH option that cannot work together with the others."""
    if settings.use_tls and settings.start_tls:
        return "implicit TLS (smtps) and STARTTLS cannot both be on"
    if settings.insecure_auth and not _is_loopback(settings.host):
        return (
            f"insecure_auth=1 would send the password in cleartext to {settings.host}, and is allowed"
            " only for a loopback host (127.0.0.1, ::1, localhost); use smtps:// or a server that"
            " offers STARTTLS instead"
        )
    if settings.tls_ca is not None and not settings.tls_verify:
        return "tls_ca has no effect with tls_verify=0; give one of them, not both"
    if settings.tls_ca is not None:
        return _ca_file_problem(settings.tls_ca)
    return None


def _ca_file_problem(path: str) -> str | None:
    """Why `path` cannot serve as a PEM file of CA certificates, or None when it can."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except FileNotFoundError:
        return f"tls_ca={path}: no such file"
    except OSError as exc:  # ssl.SSLError is one: the file holds no PEM certificate
        return f"tls_ca={path}: not a readable PEM file of CA certificates ({exc})"
    return None


def _is_loopback(host: str) -> bool:
    """Whether `host` names this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _capacity_problem(settings: SmtpSettings) -> str | None:
    """Names the first timeout, pool or rate value that cannot work."""
    if not 0 < settings.timeout < math.inf:  # NaN fails every comparison
        return f"timeout must be a number of seconds above 0, not {settings.timeout}"
    if settings.pool_size < 1:
        return f"pool_size must be at least 1, not {settings.pool_size}"
    if settings.concurrency < 1:
        return f"concurrency must be at least 1, not {settings.concurrency}"
    if not 0 <= settings.rate_limit < math.inf:
        rate = settings.rate_limit
        return f"rate_limit must be a number of messages per second, 0 (unlimited) or more, not {rate}"
    return None


def _url_fields(url: str) -> dict[str, Any]:
    """The SmtpSettings fields an SMTP URL spells out; raises ConfigError naming the fault."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ConfigError(f"not a URL ({exc})") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"scheme must be smtp:// or smtps://, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise ConfigError("no host given (expected smtp://host:port)")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"port is not a number from 0 to 65535 ({exc})") from exc
    return {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "use_tls": parts.scheme == "smtps",
        **_query_fields(parts.query),
    }


def _query_fields(query: str) -> dict[str, Any]:
    """The options of an SMTP URL's query string, converted to their field types."""
    fields: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _URL_OPTIONS:
            raise ConfigError(f"unknown option {name!r} (known: {', '.join(_URL_OPTIONS)})")
        field_name, convert, expected = _URL_OPTIONS[name]
        try:
            fields[field_name] = convert(value)
        except ValueError as exc:
            raise ConfigError(f"option {name}={value!r} is not {expected}") from exc
    return fields


def _flag(value: str) -> bool:
    """Reads a URL flag such as `starttls=1` or `starttls=false`; anything else is an error
    rather than a guess, since a flag may turn a security check off."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(value)


def _file_path(value: str) -> str:
    """A file path given in the URL; it must not be empty."""
    if not value:
        raise ValueError(value)
    return value


# URL query option -> (SmtpSettings field, converter, what the value must be)
_URL_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "starttls": ("start_tls", _flag, _FLAG),
    "insecure_auth": ("insecure_auth", _flag, _FLAG),
    "tls_verify": ("tls_verify", _flag, _FLAG),
    "tls_ca": ("tls_ca", _file_path, "a path to a PEM file of CA certificates"),
    "timeout": ("timeout", float, "a number of seconds"),
    "pool_size": ("pool_size", int, "a whole number"),
    "concurrency": ("concurrency", int, "a whole number"),
    "rate_limit": ("rate_limit", float, "a number of messages per second"),
}
