"""Compiled templates are kept between runs, and never stand in for a template that changed."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from automator.templates import Templates


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "automator" / "templates"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "email_templates" / "hello"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hello", encoding="utf-8")
    (folder / "body.txt").write_text("Hi {{ name }}", encoding="utf-8")
    (folder / "body.html").write_text("<p>Hi {{ name }}</p>", encoding="utf-8")
    return tmp_path / "email_templates"


def text(root: Path) -> str:
    return Templates(root).render("hello", "en", {"name": "Lan <3"}).text


def test_a_template_compiled_once_is_not_compiled_by_the_next_run(root, cache, monkeypatch):
    text(root)
    assert list(cache.glob("*.jinja"))

    def no_compiling(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("compiled again")

    monkeypatch.setattr(jinja2.Environment, "compile", no_compiling)
    assert text(root) == "Hi Lan <3"


def test_an_edited_template_is_compiled_again(root, cache):
    text(root)
    (root / "hello" / "body.txt").write_text("Hello again {{ name }}", encoding="utf-8")

    assert text(root) == "Hello again Lan <3"


def test_html_stays_escaped_when_loaded_compiled(root, cache):
    Templates(root).render("hello", "en", {"name": "x"})

    assert Templates(root).render("hello", "en", {"name": "<b>"}).html == "<p>Hi &lt;b&gt;</p>"


def test_a_damaged_entry_is_compiled_again(root, cache):
    text(root)
    for entry in cache.glob("*.jinja"):
        entry.write_bytes(entry.read_bytes()[:20])

    assert text(root) == "Hi Lan <3"


def test_without_a_cache_folder_templates_are_compiled_each_run(root, tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))

    assert Templates(root).env.bytecode_cache is None
    assert text(root) == "Hi Lan <3"


def test_a_template_naming_a_filter_that_is_gone_fails_its_check_though_compiled_before(root, cache):
    (root / "hello" / "body.txt").write_text("{{ name | shout }}", encoding="utf-8")
    before = Templates(root)
    before.env.filters["shout"] = str.upper
    assert before.check("hello") == []

    errors = Templates(root).check("hello")

    assert [error.message for error in errors] == ["No filter named 'shout'."]
