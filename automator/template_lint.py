"""Template lint: what a rule's templates read, checked against what a message's context holds.

Templates are strict (an undefined name fails the render), but a render happens only when a
message goes out. `automator check` reads each template's syntax tree instead, so a typo
(`contact.frist_name`) is found before a rule is turned on: every top-level name must be in
the render context, `event` read only by the templates of event-triggered rules (the others'
messages have none), `contact.X` a field contacts have, `event.X` a property the trigger's
events carry (when that is known), and every HTML part needs its unsubscribe link.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import meta, nodes

from automator.errors import TemplateError
from automator.templates import cache_folder, compiled_by

log = logging.getLogger("automator.templates")

# What `Renderer.context` and `Templates.render` give every template.
CONTEXT = ("contact", "event", "coupon", "rule", "trigger", "unsubscribe_url", "base_url", "now", "locale")
CONTACT_FIELDS = frozenset({"email", "first_name", "last_name", "locale", "timezone", "stage"})
FIXED_FIELDS = {
    "coupon": frozenset({"code", "percent_off", "expires_at"}),
    "rule": frozenset({"id", "name"}),
    "trigger": frozenset({"at", "days_left"}),
}


@dataclass(frozen=True)
class Vocabulary:
    """What the data carries beyond the built-in contact fields: attribute names (declared in
    automator.toml, or seen in the store), and the properties of each event type that is
    known. An event type missing from `events` is not checked: nothing is guessed."""

    attributes: frozenset[str] = frozenset()
    events: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def contact_fields(self) -> frozenset[str]:
        return CONTACT_FIELDS | self.attributes


def lint_template(
    env: jinja2.Environment,
    name: str,
    event_type: str | None,
    vocabulary: Vocabulary,
    eventless: str | None = None,
) -> list[TemplateError]:
    """Every problem in the files of template folder `name` and the layouts and includes they
    reach. `event_type` is the rule's trigger event, or None for other triggers; `eventless`
    names the rule and its trigger when that is not an event (a date, a stage, a schedule):
    its messages have no `event`, so a template that reads one fails at every render."""
    assert env.loader is not None
    files = sorted(file for file in env.loader.list_templates() if file.startswith(f"{name}/"))
    errors: list[TemplateError] = []
    for file in files:
        trees = _trees(env, file)
        if trees is None:
            continue  # a file that does not parse: `Templates.check` reports it
        for shown, tree in trees.items():
            errors.extend(_file_problems(env, shown, tree, event_type, vocabulary))
            if eventless is not None:
                errors.extend(_event_read(shown, tree, eventless))
        is_html_body = file.rsplit("/", 1)[-1].startswith("body") and file.endswith(".html")
        if is_html_body and not any(_reads_name(tree, "unsubscribe_url") for tree in trees.values()):
            errors.append(
                TemplateError(
                    f"email_templates/{file}",
                    None,
                    "unsubscribe_url: never used (every email needs its unsubscribe link)",
                )
            )
    return _distinct(errors)


def _trees(env: jinja2.Environment, file: str) -> dict[str, nodes.Template] | None:
    """The parsed file and every file it extends, includes or imports, by name; None when one
    does not parse or cannot be found (a computed name is left out)."""
    assert env.loader is not None
    trees: dict[str, nodes.Template] = {}
    waiting = [file]
    while waiting:
        current = waiting.pop()
        if current in trees:
            continue
        try:
            trees[current] = _parsed(env, current, env.loader.get_source(env, current)[0])
        except (jinja2.TemplateError, UnicodeDecodeError, OSError):  # `Templates.check` reports it
            return None
        waiting.extend(other for other in meta.find_referenced_templates(trees[current]) if other)
    return trees


# A layout or include is read by the templates of every rule that uses it: `check` parses it
# and finds its names once (a file whose text has changed is parsed again).
@lru_cache(maxsize=256)
def _parsed(env: jinja2.Environment, file: str, source: str) -> nodes.Template:
    return env.parse(source, file)


@lru_cache(maxsize=256)
def _undeclared(tree: nodes.Template) -> frozenset[str]:
    return frozenset(meta.find_undeclared_variables(tree))


def _file_problems(
    env: jinja2.Environment, file: str, tree: nodes.Template, event_type: str | None, vocabulary: Vocabulary
) -> Iterator[TemplateError]:
    shown = f"email_templates/{file}"
    known = set(CONTEXT) | set(env.globals)
    for undefined in sorted(_undeclared(tree) - known):
        yield TemplateError(shown, _first_line(tree, undefined), f"{undefined}: undefined name ({_sees()})")
    assigned = _assigned(tree)
    guarded = _guarded(tree, assigned)
    fields: dict[str, frozenset[str] | None] = {
        "contact": vocabulary.contact_fields,
        "event": vocabulary.events.get(event_type) if event_type else None,
        **FIXED_FIELDS,
    }
    reported: set[tuple[str, str]] = set()  # each field once per file, at its first line
    for scope, name, line in sorted(_fields_read(tree, assigned), key=lambda read: read[2]):
        allowed = fields.get(scope)
        if allowed is None or name in allowed or (scope, name) in guarded | reported:
            continue
        reported.add((scope, name))
        yield TemplateError(shown, line, f"{scope}.{name}: {_unknown(scope, name, allowed, event_type)}")


def _event_read(file: str, tree: nodes.Template, eventless: str) -> Iterator[TemplateError]:
    """`event` read (not assigned, nor tested with `is defined`) in a template of a rule whose
    trigger gives its messages no event."""
    if "event" not in _undeclared(tree) or _tests_defined(tree, "event"):
        return
    yield TemplateError(
        f"email_templates/{file}",
        _first_line(tree, "event"),
        f"event: read here, but rule {eventless} has no event; only an event trigger gives a template one",
    )


def _tests_defined(tree: nodes.Template, name: str) -> bool:
    """Whether the template tests `name is defined` (or `undefined`) itself."""
    return any(
        test.name in ("defined", "undefined") and isinstance(test.node, nodes.Name) and test.node.name == name
        for test in tree.find_all(nodes.Test)
    )


def _sees() -> str:
    return "a template sees " + ", ".join(CONTEXT)


def _unknown(scope: str, name: str, allowed: frozenset[str], event_type: str | None) -> str:
    close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if scope == "contact":
        return (
            f"contacts have no field '{name}'{hint}; declare an attribute in automator.toml "
            '([contacts] attributes = ["..."]) or test it with `is defined`'
        )
    if scope == "event":
        return f"{event_type} events carry no property '{name}'{hint}"
    return f"{scope} has no field '{name}'{hint}; it has {', '.join(sorted(allowed))}"


def _fields_read(tree: nodes.Node, assigned: set[str]) -> Iterator[tuple[str, str, int]]:
    """(scope, field, line) for each `contact.x`, `contact["x"]`, `event.x`… in `tree` (itself
    included), where the scope is a context name the template did not assign itself."""
    for node in [tree, *tree.find_all((nodes.Getattr, nodes.Getitem))]:
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        target = node.node
        if not isinstance(target, nodes.Name) or target.name in assigned:
            continue
        if isinstance(node, nodes.Getattr):
            yield target.name, node.attr, node.lineno
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield target.name, node.arg.value, node.lineno


def _assigned(tree: nodes.Template) -> set[str]:
    """Names the template sets, loops over or defines as macros anywhere (a local `event`
    shadows the context's)."""
    names = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    names |= {node.name for node in tree.find_all(nodes.Macro)}
    return names


def _guarded(tree: nodes.Template, assigned: set[str]) -> set[tuple[str, str]]:
    """(scope, field) the file tests with `is defined` / `is undefined` or `"x" in contact`:
    the template handles its absence itself."""
    guarded: set[tuple[str, str]] = set()
    for test in tree.find_all(nodes.Test):
        if test.name in ("defined", "undefined"):
            guarded |= {(scope, name) for scope, name, _ in _fields_read(test.node, assigned)}
    for compare in tree.find_all(nodes.Compare):
        if isinstance(compare.expr, nodes.Const) and isinstance(compare.expr.value, str):
            for operand in compare.ops:
                if operand.op in ("in", "notin") and isinstance(operand.expr, nodes.Name):
                    guarded.add((operand.expr.name, compare.expr.value))
    return guarded


def _reads_name(tree: nodes.Template, name: str) -> bool:
    return any(node.name == name and node.ctx == "load" for node in tree.find_all(nodes.Name))


def _first_line(tree: nodes.Template, name: str) -> int | None:
    lines = [node.lineno for node in tree.find_all(nodes.Name) if node.name == name and node.ctx == "load"]
    return min(lines) if lines else None


def _distinct(errors: list[TemplateError]) -> list[TemplateError]:
    seen: set[str] = set()
    kept = []
    for error in errors:
        if str(error) not in seen:
            seen.add(str(error))
            kept.append(error)
    return kept


def lint_key(
    env: jinja2.Environment, linted: list[tuple[str, str | None, str | None]], vocabulary: Vocabulary
) -> str:
    """What a project's lint depends on, as a digest: this module's code, how the
    environment parses (Jinja's version, its syntax, filters and tests), the names templates
    may use, each template folder linted with its trigger's event type (or the eventless rule
    that sends it), the vocabulary, and every file a template could reach (see
    `_template_files`)."""
    hashed = hashlib.sha256()
    parts = [
        hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        compiled_by(env),
        sorted(env.globals),
        linted,
        sorted(vocabulary.attributes),
        sorted((event, sorted(found)) for event, found in vocabulary.events.items()),
    ]
    hashed.update(json.dumps(parts).encode())
    for name, content in _template_files(env):
        hashed.update(f"\0{name}\0{len(content)}\0".encode())
        hashed.update(content)
    return hashed.hexdigest()


def _template_files(env: jinja2.Environment) -> Iterator[tuple[str, bytes]]:
    """Every file under the templates' folders, by path, folders linked from them included
    (the loader's list leaves those out, but an `extends` or `include` reaches them); a
    loader of another kind, its templates by name."""
    loader = env.loader
    if not isinstance(loader, jinja2.FileSystemLoader):
        assert loader is not None
        for name in loader.list_templates():
            yield name, loader.get_source(env, name)[0].encode()
        return
    seen: set[str] = set()  # the real folders walked: a link back up is walked once
    for root in loader.searchpath:
        for folder, subfolders, files in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:
                subfolders.clear()
                continue
            seen.add(real)
            for file in sorted(files):
                path = os.path.join(folder, file)
                try:
                    yield path, Path(path).read_bytes()
                except OSError:
                    yield path, b"unreadable"
            subfolders.sort()


def _cache_file() -> Path | None:
    folder = cache_folder()
    return None if folder is None else folder / "lint.json"


def cached(key: str) -> list[TemplateError] | None:
    """The problems the last lint found, when it was of the same `lint_key`: `automator
    check` is run again and again on templates that have not changed, and parsing them and
    finding their names is most of its time. None when there is no such result."""
    path = _cache_file()
    try:
        kept = json.loads(path.read_text()) if path is not None else None
        if not isinstance(kept, dict) or kept.get("key") != key:
            return None
        return [TemplateError(template, line, message) for template, line, message in kept["problems"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def keep(key: str, problems: list[TemplateError]) -> None:
    """Keep this lint's problems for the next run (only the last lint's: one file)."""
    path = _cache_file()
    if path is None:
        return
    found = [[problem.template, problem.line, problem.message] for problem in problems]
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(f"lint.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"key": key, "problems": found}))
        partial.replace(path)
    except OSError as exc:
        log.warning("template lint is not kept (%s); each check lints again", exc)
