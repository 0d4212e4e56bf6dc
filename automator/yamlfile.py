"""Read YAML while remembering the line of every key, so errors can point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from automator.display import printable, undecodable

# libyaml's parser, where PyYAML was built with it, reads a rule file several times faster
# than the pure-Python one; a file it refuses is read again by the pure-Python one, whose
# error messages say more ("expected <block end>, but found '<block mapping start>'", where
# libyaml says "did not find expected key").
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _walk(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}.{index}" if path else str(index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines)


def load_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file; return its data and a map from dotted paths to line numbers.

    Raises yaml.YAMLError (with a mark) when the file does not parse or is not UTF-8 text,
    OSError when it cannot be read (a folder, no permission).
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column, problem = undecodable(exc)
        mark = yaml.Mark(str(path), exc.start, line - 1, column - 1, None, exc.start)
        raise yaml.MarkedYAMLError(problem=problem, problem_mark=mark) from exc
    try:
        node, data = _parse(_FAST_LOADER, text, path)
    except yaml.YAMLError:
        node, data = _parse(yaml.SafeLoader, text, path)
    if node is None:
        return None, {}
    lines: dict[str, int] = {}
    _walk(node, "", lines)
    return data, lines


def _parse(loader_class: type[yaml.SafeLoader], text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The document's node tree and its data; raises yaml.MarkedYAMLError naming the line."""
    try:
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            return node, None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: no mark of its own
        line = text.count("\n", 0, exc.position)
        column = exc.position - text.rfind("\n", 0, exc.position) - 1
        mark = yaml.Mark(str(path), exc.position, line, column, text, exc.position)
        character = printable(chr(exc.character)) if isinstance(exc.character, int) else repr(exc.character)
        raise yaml.MarkedYAMLError(
            problem=f"holds a character YAML does not allow ({character})", problem_mark=mark
        ) from exc
