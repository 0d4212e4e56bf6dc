"""Each command's --help names what an option takes in the user's words (`--now <time>`,
`--contact <email>`), not as a Python type (`<str>`, `<list[str]>`) nor as the integer range
that keeps an id inside the database (`1<=x<=9223372036854775807`)."""

from __future__ import annotations

import re

import pytest
import typer

from automator.cli import app

PYTHON_TYPE = re.compile(r"<(str|list\[str\]|path)>|\d{12,}")


def commands(group=None, path=()):
    """Every command's words, e.g. ("queue", "hold"), walking the CLI's own tree."""
    group = group or typer.main.get_command(app)
    for name, command in sorted(getattr(group, "commands", {}).items()):
        if getattr(command, "commands", None):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("words", list(commands()), ids=" ".join)
def test_an_options_placeholder_says_what_it_takes(words, cli):
    result = cli(*words, "--help")

    assert result.exit_code == 0, result.output
    options = result.stdout.partition("\nOptions:\n")[2]  # with their wrapped lines
    assert "--help" in options, result.stdout
    assert PYTHON_TYPE.findall(options) == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize("words", [("queue", "hold"), ("queue", "show")])
def test_a_message_number_out_of_range_is_named_without_the_range(words, cli):
    result = cli(*words, "0", "--reason", "x") if words[1] == "hold" else cli(*words, "0")

    assert result.exit_code == 2
    assert "0 is no message id: they are numbers from 1" in result.output
    assert not re.search(r"\d{12,}", result.output)
