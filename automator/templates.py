"""Email templates: Jinja2 in a sandbox, strict about undefined names, with locale variants.

A template is a folder under `email_templates/` holding `subject.txt`, `body.txt`,
`body.html` and locale variants such as `body.vi.html`; `_layout.html` is shared.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from automator.display import undecodable
from automator.errors import TemplateError
from automator.formats import local_date, local_datetime, money, number

log = logging.getLogger("automator.templates")

PARTS = ("subject.txt", "body.txt", "body.html")
AUTOESCAPED = ("html",)  # file extensions whose output is HTML-escaped
DEFAULT_LOCALE = "en"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Record:
    """A read-only view of a dict whose keys are attributes, so `event.items` is the property,
    not dict.items. Missing keys raise AttributeError, which StrictUndefined reports by name.

    Values are wrapped when first read: a template reads a few fields of a contact or an
    event, and most messages never look at the rest."""

    __slots__ = ("_data", "_wrapped")

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_wrapped", {})

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        wrapped = self._wrapped
        if name not in wrapped:
            wrapped[name] = wrap(self._data[name])
        return wrapped[name]

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __repr__(self) -> str:
        return f"Record({self._data!r})"


def wrap(value: Any) -> Any:
    """Dicts become Records (recursively), ISO strings become dates, the rest stays."""
    if isinstance(value, dict):
        return Record(value)
    if isinstance(value, list):
        return [wrap(item) for item in value]
    if not isinstance(value, str) or value[4:5] != "-":  # most strings are no date: no regex
        return value
    if _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    if _ISO_DATETIME.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def language(locale: str | None) -> str:
    """`vi_VN`, `vi-VN` and `vi` all mean `vi`."""
    return (locale or DEFAULT_LOCALE).replace("-", "_").split("_")[0].lower() or DEFAULT_LOCALE


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, reading a Record's fields directly: they are data the engine built
    (strings, numbers, dates, lists, Records), so the per-attribute safety checks only cost
    time. Everything else still goes through the sandbox."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._loaded: dict[tuple[str, str | None], jinja2.Template] = {}

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is Record:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def get_template(
        self,
        name: str | jinja2.Template,
        parent: str | None = None,
        globals: MutableMapping[str, Any] | None = None,
    ) -> jinja2.Template:
        """A template once loaded, kept by name (files are read once per process, see
        `auto_reload`). `{% extends %}` asks for its layout on every render, and Jinja's own
        cache made a ChainMap of the globals and copied them into the layout's each time."""
        if globals is not None or not isinstance(name, str) or self.auto_reload:
            return super().get_template(name, parent, globals)
        key = (name, parent)
        template = self._loaded.get(key)
        if template is None:
            template = self._loaded[key] = super().get_template(name, parent)
        return template

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is Record and type(argument) is str:
            try:
                return obj[argument]
            except KeyError:
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


class Templates:
    """The email_templates/ folder of a project."""

    def __init__(self, root: Path, timezone: str = "UTC") -> None:
        self.root = root
        self.timezone = timezone
        self.env = _Sandbox(
            loader=jinja2.FileSystemLoader(str(root)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=AUTOESCAPED, default=False),
            keep_trailing_newline=False,
            auto_reload=False,  # files are read once per process; restart to pick up edits
        )
        self.env.bytecode_cache = compiled_templates_cache(self.env)
        self._languages: dict[tuple[str, str], str] = {}
        self._variants: dict[tuple[str, str, str, str], str] = {}
        self._templates: dict[str, tuple[jinja2.Template, dict[str, Any]]] = {}
        self._reads: dict[str, set[str] | None] = {}
        self.env.filters.update(
            money=_money_filter, date=_date_filter, datetime=_datetime_filter, number=_number_filter
        )
        self._globals = dict(self.env.globals)

    def exists(self, name: str) -> bool:
        return (self.root / name).is_dir()

    def check(self, name: str) -> list[TemplateError]:
        """Parse every file of a template; one error per missing part or syntax error."""
        if not self.exists(name):
            return [TemplateError(f"email_templates/{name}", None, "template folder does not exist")]
        errors = [
            TemplateError(f"email_templates/{name}/{part}", None, "missing")
            for part in PARTS
            if not (self.root / name / part).exists()
        ]
        for path in sorted((self.root / name).glob("*")):
            errors.extend(self._parse(path.relative_to(self.root).as_posix()))
        return errors

    def check_shared(self) -> list[TemplateError]:
        """Parse the shared files (names starting with `_`, such as _layout.html)."""
        errors: list[TemplateError] = []
        for path in sorted(self.root.glob("_*")):
            errors.extend(self._parse(path.relative_to(self.root).as_posix()))
        return errors

    def _parse(self, name: str) -> list[TemplateError]:
        try:
            self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            return [
                TemplateError(
                    f"email_templates/{exc.name or name}", exc.lineno, exc.message or "syntax error"
                )
            ]
        except jinja2.TemplateNotFound as exc:
            if exc.name == name:  # found by the folder's listing, yet no file: a folder
                return [TemplateError(f"email_templates/{name}", None, "cannot be read: not a file")]
            return [TemplateError(f"email_templates/{name}", None, f"includes missing template {exc.name}")]
        except UnicodeDecodeError as exc:  # of this file or one it includes: the message says which byte
            line, _, problem = undecodable(exc)
            return [TemplateError(f"email_templates/{name}", line, problem)]
        except OSError as exc:
            return [TemplateError(f"email_templates/{name}", None, f"cannot be read: {exc.strerror}")]
        return []

    def reads_any(self, name: str, names: frozenset[str]) -> bool:
        """Whether the template reads any of `names` from the context; when that cannot be
        told (a file that does not parse, an include whose name is computed), it is taken to."""
        if name not in self._reads:
            self._reads[name] = self.reads(name)
        found = self._reads[name]
        return found is None or bool(found & names)

    def reads(self, name: str) -> set[str] | None:
        """The context names a template's files take (every part and locale variant, with
        what they extend, include or import); None when that cannot be told."""
        folder = self.root / name
        if not folder.is_dir():
            return None
        names: set[str] = set()
        seen: set[str] = set()
        for path in sorted(folder.iterdir()):
            found = _reads(self.env, f"{name}/{path.name}", seen)
            if found is None:
                return None
            names |= found
        return names

    def render(
        self, name: str, locale: str | None, context: dict[str, Any], zone: str | None = None
    ) -> Rendered:
        """Render subject, text and HTML in the contact's language (English when no variant).

        Dates are shown in `zone` (the contact's time zone), else the project's.
        """
        lang = self.language_for(name, locale)
        # One dict holding the globals too, shared by the three parts: Jinja would otherwise
        # merge the globals into a fresh dict for every part of every message.
        context = {
            **self._globals,
            **{key: wrap(value) for key, value in context.items()},
            "locale": lang,
            "_zone": zone or self.timezone,
        }
        subject = " ".join(self._render(name, "subject", "txt", lang, context).split())
        return Rendered(
            subject=subject,
            text=self._render(name, "body", "txt", lang, context),
            html=self._render(name, "body", "html", lang, context),
        )

    def _render(self, name: str, part: str, ext: str, lang: str, context: dict[str, Any]) -> str:
        file = self._variant(name, part, ext, lang)
        try:
            template, names = self._template(file)
            try:
                # Jinja's `new_context` would make a set of the template's globals from a
                # ChainMap of them for every render: a tenth of a message's rendering.
                here = self.env.context_class(self.env, context, template.name, template.blocks, names)
                parts = template.root_render_func(here)
                return self.env.concat(parts)  # type: ignore[attr-defined]
            except Exception:
                self.env.handle_exception()  # re-raises with the template's own line numbers
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"email_templates/{exc.name or file}", exc.lineno, exc.message or "syntax error"
            ) from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"email_templates/{file}", None, f"template {exc.name} not found") from exc
        except Exception as exc:  # any render failure is reported with the template's line
            raise TemplateError(f"email_templates/{file}", _render_line(exc, file), _describe(exc)) from exc

    def _template(self, file: str) -> tuple[jinja2.Template, dict[str, Any]]:
        """The template, and its globals in one dict."""
        loaded = self._templates.get(file)
        if loaded is None:
            template = self.env.get_template(file)
            loaded = self._templates[file] = (template, dict(template.globals))
        return loaded

    def language_for(self, name: str, locale: str | None) -> str:
        """The contact's language when the template has a variant for it, else English, so
        an English email never carries French number formats (or an unknown locale's)."""
        lang = language(locale)
        key = (name, lang)
        if key not in self._languages:
            has_variant = lang != DEFAULT_LOCALE and any((self.root / name).glob(f"*.{lang}.*"))
            self._languages[key] = lang if has_variant else DEFAULT_LOCALE
        return self._languages[key]

    def _variant(self, name: str, part: str, ext: str, lang: str) -> str:
        key = (name, part, ext, lang)
        if key not in self._variants:
            localized = f"{name}/{part}.{lang}.{ext}"
            self._variants[key] = localized if (self.root / localized).exists() else f"{name}/{part}.{ext}"
        return self._variants[key]


def _reads(env: jinja2.Environment, name: str, seen: set[str]) -> set[str] | None:
    seen.add(name)
    try:
        assert env.loader is not None
        source = env.loader.get_source(env, name)[0]
        tree = env.parse(source)
    except jinja2.TemplateError:
        return None
    names = set(meta.find_undeclared_variables(tree))
    for other in meta.find_referenced_templates(tree):
        if other is None:
            return None  # a computed name: it could be any template
        if other in seen:
            continue
        found = _reads(env, other, seen)
        if found is None:
            return None
        names |= found
    return names


class CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, so that `automator check` and a cron-driven
    tick do not compile every template at every start. A template is compiled again when its
    source changes or the environment that compiles it does (both make the checksum); an
    entry that cannot be read is compiled again, a folder that cannot be written is left."""

    def __init__(self, directory: Path, env: jinja2.Environment) -> None:
        super().__init__(str(directory), "%s.jinja")
        self._env = env
        self._compiled_by = ""  # worked out at the first template, once the filters are in
        self._writable = True

    def get_source_checksum(self, source: str) -> str:
        if not self._compiled_by:
            self._compiled_by = compiled_by(self._env)
        return super().get_source_checksum(self._compiled_by + source)

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:
            bucket.reset()  # damaged: compiled again, and replaced

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if not self._writable:
            return
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            self._writable = False
            log.warning("compiled templates are not kept (%s); each run compiles them", exc)


def cache_folder() -> Path | None:
    """automator's folder in the user's cache folder (`$XDG_CACHE_HOME`, else `~/.cache`);
    None when there is no home folder to make it in."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "automator"
    return folder if folder.is_absolute() else None


def compiled_templates_cache(env: jinja2.Environment) -> CompiledTemplates | None:
    """The cache of compiled templates in the user's cache folder (`$XDG_CACHE_HOME`, else
    `~/.cache`), or None when there is none that can be made."""
    base = cache_folder()
    if base is None:
        return None  # no home folder: nowhere to keep them
    directory = base / "templates"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return CompiledTemplates(directory, env) if os.access(directory, os.W_OK) else None


def compiled_by(env: jinja2.Environment) -> str:
    """What compiled code depends on besides the source: Jinja's version and the
    environment's syntax, escaping, filters and tests (a template that names a filter that
    is gone must fail to compile, not at render time)."""
    options = (
        jinja2.__version__,
        type(env).__qualname__,
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        env.optimized,
        AUTOESCAPED,
        sorted(env.extensions),
        sorted(env.filters),
        sorted(env.tests),
    )
    return hashlib.sha1(repr(options).encode()).hexdigest()


def _describe(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        message = str(exc.message).replace("'automator.templates.Record object' has no attribute", "no field")
        return f"undefined: {message}"
    return f"{type(exc).__name__}: {exc}"


def _render_line(exc: Exception, file: str) -> int | None:
    """The template line a render error happened on, from the traceback Jinja rewrites."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(file):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@jinja2.pass_context
def _money_filter(context: Any, amount: Any, currency: str) -> str:
    return money(amount, currency, context["locale"])


@jinja2.pass_context
def _date_filter(context: Any, value: date | datetime) -> str:
    return local_date(value, context["locale"], context["_zone"])


@jinja2.pass_context
def _datetime_filter(context: Any, value: datetime) -> str:
    return local_datetime(value, context["locale"], context["_zone"])


@jinja2.pass_context
def _number_filter(context: Any, value: Any) -> str:
    return number(value, context["locale"])
