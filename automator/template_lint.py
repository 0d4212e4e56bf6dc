"""Template lint: what a rule's templates read, checked against what a message's context holds.

Templates are strict (an undefined name fails the render), but a render happens only when a
message goes out. `automator check` reads each template's syntax tree instead, so a typo
(`contact.frist_name`) is found before a rule is turned on: every top-level name must be in
the render context, `contact.X` a field contacts have, `event.X` a property the trigger's
events carry (when that is known), and every HTML part needs its unsubscribe link.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import jinja2
from jinja2 import meta, nodes

from automator.errors import TemplateError

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
    env: jinja2.Environment, name: str, event_type: str | None, vocabulary: Vocabulary
) -> list[TemplateError]:
    """Every problem in the files of template folder `name` and the layouts and includes they
    reach. `event_type` is the rule's trigger event, or None for other triggers."""
    assert env.loader is not None
    files = sorted(file for file in env.loader.list_templates() if file.startswith(f"{name}/"))
    errors: list[TemplateError] = []
    for file in files:
        trees = _trees(env, file)
        if trees is None:
            continue  # a file that does not parse: `Templates.check` reports it
        for shown, tree in trees.items():
            errors.extend(_file_problems(env, shown, tree, event_type, vocabulary))
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
        except jinja2.TemplateError:
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
