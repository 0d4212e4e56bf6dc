"""Settings: `automator.toml` in the project, overridden by `AUTOMATOR_*` environment variables."""

from __future__ import annotations

import difflib
import functools
import os
import re
import tomllib
from datetime import time, timedelta
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from automator.display import undecodable
from automator.durations import parse_duration
from automator.errors import ConfigError
from automator.model_base import MAX_PRIORITY

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

# sqlite:///automator.db, sqlite+pysqlite:///data/a.db?timeout=5: a file named by a path
# that does not start at the root (sqlite:////var/lib/a.db does) or with a URI's "file:".
_RELATIVE_SQLITE = re.compile(r"(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>(?!/|file:)[^?]+)(?P<query>\?.*)?")

# The sender's address as the From header and the SMTP envelope carry it: an ASCII dot-atom,
# "@", and a host name (localhost too, for a test relay). An IDN domain goes in its xn-- form.
_ATOM = r"[A-Za-z0-9_!#$%&'*+/=?^`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SENDER_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
_SENDER_EXAMPLE = "Shop <news@shop.example>"

ENVIRONMENT = {
    "AUTOMATOR_DATABASE_URL": "database_url",
    "AUTOMATOR_OUTBOX": "outbox",
    "AUTOMATOR_FROM": "sender",
    "AUTOMATOR_SMTP_URL": "smtp_url",
    "AUTOMATOR_BASE_URL": "base_url",
    "AUTOMATOR_SECRET": "secret",
    "AUTOMATOR_SECRET_PREVIOUS": "secret_previous",
    "AUTOMATOR_TIMEZONE": "timezone",
    "AUTOMATOR_RENDER_WORKERS": "render_workers",
}


class QuietHours(BaseModel):
    """A daily window in the contact's local time during which due messages wait."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time = time(21, 0)
    end: time = time(8, 0)


class FrequencyCap(BaseModel):
    """At most `max` emails per contact in any rolling window of `per`, across rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(default=2, ge=1)
    per: Duration = timedelta(hours=24)


class ApiSettings(BaseModel):
    """The HTTP API (`[api]`): each key may make `requests_per_second` on average and
    `burst` at once; `segment_events` names the event type a Segment event becomes
    (`"Order Completed" = "order_placed"`; others become snake_case: `order_completed`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_second: float = Field(default=100.0, gt=0, allow_inf_nan=False)
    burst: int = Field(default=200, ge=1)
    segment_events: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]] = {}


class ContactFields(BaseModel):
    """`[contacts]`: the attributes contacts carry (beyond email, first_name, last_name,
    locale, timezone and stage), which templates may read as `contact.X`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: list[str] = []


class EventProperties(BaseModel):
    """`[events.cart_updated]`: the properties events of one type carry, which templates of
    rules on that event may read as `event.X`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    properties: list[str] = []


class Settings(BaseModel):
    """Everything an operator configures. Paths are resolved against the project folder."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    project: Path = Path(".")
    database_url: str = ""
    outbox: Path = Path("outbox")
    sender: str = Field(default="Lotus Shop <hello@shop.example.com>", alias="from")
    smtp_url: str | None = None
    base_url: str = "https://shop.example.com"
    # Signs unsubscribe links (the key itself) and console sessions (a key derived from it);
    # empty when unset. What must not be forged refuses to run on a weak one: require_secret.
    secret: str = ""
    # The secrets used before this one, newest first: unsubscribe links in emails already sent
    # were signed with them and keep working. Sessions are checked with `secret` alone.
    secret_previous: list[str] = []
    timezone: str = "UTC"
    quiet_hours: QuietHours | None = QuietHours()
    frequency_cap: FrequencyCap | None = FrequencyCap()
    priorities: dict[str, Annotated[int, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]] = {}
    api: ApiSettings = ApiSettings()
    contacts: ContactFields = ContactFields()
    events: dict[str, EventProperties] = {}
    # Links in the HTML part become signed redirects through `run --listen` that count each
    # click (docs/results.md). Off unless asked for: a redirect is a hop a reader can see.
    track_clicks: bool = False
    retry_limit: int = Field(default=8, ge=1)
    # Processes that render big chunks of messages while the tick writes the ones before:
    # unset is one per CPU core but one (the tick's own), 0 renders in the tick's process.
    render_workers: int | None = Field(default=None, ge=0)

    @field_validator("quiet_hours", "frequency_cap", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """`quiet_hours = false` in automator.toml turns a policy off (TOML has no null)."""
        return None if value is False else value

    @field_validator("secret_previous", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """AUTOMATOR_SECRET_PREVIOUS is one string: `old-one,older-one`."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sender")
    @classmethod
    def _one_address(cls, value: str) -> str:
        """The sender goes into the From header of every email as it is: a line break in it
        would add headers, and a value that is not one address gets every message refused."""
        if not value.isprintable():
            raise ValueError(f"{value!r} holds a line break or another control character")
        if len(getaddresses([value])) != 1:
            raise ValueError(f"{value!r} is not one address; give one, such as {_SENDER_EXAMPLE}")
        address = parseaddr(value)[1]
        if not _SENDER_ADDRESS.fullmatch(address):
            idn = "" if address.isascii() else " (write a domain that is not ASCII in its xn-- form)"
            raise ValueError(
                f"{value!r} is not an email address with an optional name, such as {_SENDER_EXAMPLE}{idn}"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        """Unsubscribe and click links are this URL followed by `/unsubscribe?…` or `/c/…`, so it
        must be a whole http(s) URL with a host, and without a query or fragment to break them."""
        example = "such as https://shop.example or https://shop.example/mail"
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError(f"{value!r} holds white space or a control character")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL ({exc})") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an absolute http:// or https:// URL, {example}")
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            raise ValueError(
                f"{value!r} has a query or a fragment, which would break the links added after it"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone '{value}' (use an IANA name such as Asia/Ho_Chi_Minh)"
            ) from exc
        return value

    @property
    def unsubscribe_secrets(self) -> list[str]:
        """The keys an unsubscribe link may be signed with: the current secret, then the previous."""
        return [self.secret, *self.secret_previous]

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    @property
    def rules_dir(self) -> Path:
        return self.project / "rules"

    @property
    def templates_dir(self) -> Path:
        return self.project / "email_templates"

    @property
    def outbox_dir(self) -> Path:
        return self.outbox if self.outbox.is_absolute() else self.project / self.outbox

    @property
    def database(self) -> str:
        """The database's URL; a SQLite file named by a relative path is in the project, as
        the default automator.db is, wherever the command runs from."""
        if not self.database_url:
            return f"sqlite:///{(self.project / 'automator.db').resolve()}"
        relative = _RELATIVE_SQLITE.fullmatch(self.database_url)
        if relative is None or relative["path"] == ":memory:":
            return self.database_url
        return f"{relative['scheme']}{(self.project / relative['path']).resolve()}{relative['query'] or ''}"


def load_settings(project: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read `project/automator.toml` (optional) and apply `AUTOMATOR_*` overrides; raises
    ConfigError on the first value that cannot be used."""
    settings, problems = read_settings(project, environ)
    if problems:
        raise problems[0]
    return settings


def read_settings(project: Path, environ: dict[str, str] | None = None) -> tuple[Settings, list[ConfigError]]:
    """The settings, and every problem in them (`automator.toml:9: timezone: …`, or
    `environment: AUTOMATOR_TIMEZONE: …`); a value that cannot be used is left at its default,
    so that `automator check` goes on to check the rest."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    problems: list[ConfigError] = []
    path = project / "automator.toml"
    text = ""
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as exc:
        problems.append(ConfigError(f"automator.toml: cannot be read: {exc.strerror}"))
    except UnicodeDecodeError as exc:
        line, _, problem = undecodable(exc)
        problems.append(ConfigError(f"automator.toml:{line}: {problem}"))
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\s*\(at line (\d+), column \d+\)", str(exc))
        message = str(exc)[: found.start()] if found else str(exc)
        problems.append(ConfigError(f"automator.toml{':' + found.group(1) if found else ''}: {message}"))
    top = values.pop("automator", {})
    values = {**(top if isinstance(top, dict) else {}), **values}
    from_environment: dict[str, str] = {}
    for variable, key in ENVIRONMENT.items():
        if environ.get(variable):
            name = "from" if key == "sender" else key
            values[name] = environ[variable]
            from_environment[name] = variable
    for _ in range(len(values) + 1):
        try:
            return Settings.model_validate({**values, "project": project}), problems
        except ValidationError as exc:
            for error in exc.errors():
                problems.append(_setting_problem(error, text, from_environment))
                values.pop(str(error["loc"][0]), None)  # left at its default
    return Settings(project=project), problems


def _setting_problem(error: Any, text: str, from_environment: dict[str, str]) -> ConfigError:
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], _setting_names(), n=1, cutoff=0.6)
        message = "unknown setting" + (f" (did you mean '{close[0]}'?)" if close else "")
    elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        message = "must be a table of settings"
    else:
        message = re.sub(r"^Input should be\b", "must be", str(error["msg"]).removeprefix("Value error, "))
    if loc[0] in from_environment:
        return ConfigError(f"environment: {from_environment[loc[0]]}: {message}")
    line = _toml_line(text, loc)
    return ConfigError(f"automator.toml{'' if line is None else f':{line}'}: {'.'.join(loc)}: {message}")


def _setting_names() -> list[str]:
    models: list[type[BaseModel]] = [
        Settings,
        QuietHours,
        FrequencyCap,
        ApiSettings,
        ContactFields,
        EventProperties,
    ]
    return sorted({info.alias or name for model in models for name, info in model.model_fields.items()})


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\" -]+?)\s*\]")


def _toml_line(text: str, loc: list[str]) -> int | None:
    """The line of automator.toml that sets the value at `loc` (or its table), if it can be found."""
    for depth in range(len(loc), 0, -1):
        table, key = ".".join(loc[: depth - 1]), loc[depth - 1]
        tables = {table, "automator"} if not table else {table}
        current = ""
        for number, line in enumerate(text.splitlines(), 1):
            header = _TABLE.match(line)
            if header:
                current = header.group(1).replace('"', "").replace(" ", "")
                if current == ".".join(loc[:depth]):
                    return number
            elif current in tables and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
                return number
    return None


SECRET_LENGTH = 32
MAKE_A_SECRET = (
    "make one with `automator secret generate` (or `openssl rand -hex 32`) and put it in "
    "AUTOMATOR_SECRET or as `secret` in automator.toml"
)
DROP_A_SECRET = "remove it from AUTOMATOR_SECRET_PREVIOUS or `secret_previous` in automator.toml"


def require_secret(settings: Settings, use: str, previous: bool = False) -> None:
    """Refuse (ConfigError) to sign or check what must not be forged with a secret that anyone
    could know or guess: the example ones say "change-me", and a short one falls to a search.
    `use` says what would rely on it ("the support console signs logins with it");
    `previous` checks the previous secrets too, for what accepts links signed with them."""
    weakness = secret_weakness(settings.secret, "the secret")
    if weakness:
        raise ConfigError(f"{weakness}, and {use}: {MAKE_A_SECRET}")
    for number, old in enumerate(settings.secret_previous if previous else [], 1):
        weakness = secret_weakness(old, f"secret_previous entry {number}")
        if weakness:
            raise ConfigError(
                f"{weakness}, and unsubscribe links signed with it are accepted: {DROP_A_SECRET}"
            )


def secret_weakness(secret: str, name: str) -> str | None:
    """Why a secret called `name` must not be used, or None when it may. Never the secret itself:
    the reason ends up in logs."""
    if not secret:
        return f"{name} is not set"
    if "change-me" in secret:
        return f"{name} is an example that everyone can read (it says change-me)"
    if len(secret) < SECRET_LENGTH:
        return f"{name} has only {len(secret)} characters (at least {SECRET_LENGTH} are needed)"
    return None


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
