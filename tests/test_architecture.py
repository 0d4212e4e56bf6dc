"""The package's shape, kept: imports point one way (no module reaches back to one that
imports it, even for types only), so each part can be read, tested and replaced alone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "automator"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, wherever the import stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {name: imports_of(path, known) - {name} for name, path in paths.items()}
    # A package's modules import the package itself to reach their siblings; that is not a
    # dependency back on them.
    return {
        name: {other for other in deps if not name.startswith(other + ".")} for name, deps in graph.items()
    }


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        trail.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                return trail[trail.index(other) :] + [other]
            if other not in state and (found := visit(other)):
                return found
        state[name] = "done"
        trail.pop()
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = a_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set()}) is None


MODULE_LINES = 500
CLASS_LINES = 250


def too_big(path: Path) -> list[str]:
    """What in `path` is over the limits: the module itself, or a class in it."""
    text = path.read_text(encoding="utf-8")
    name = module_name(path)
    found = []
    if (lines := len(text.splitlines())) > MODULE_LINES:
        found.append(f"{name}: {lines} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            lines = node.end_lineno - node.lineno + 1
            if lines > CLASS_LINES:
                found.append(f"{name}.{node.name}: {lines} lines")
    return found


def test_no_module_is_over_500_lines_and_no_class_over_250() -> None:
    found = [entry for path in sorted(PACKAGE.rglob("*.py")) for entry in too_big(path)]
    assert found == [], "split by what they hold: " + "; ".join(found)
