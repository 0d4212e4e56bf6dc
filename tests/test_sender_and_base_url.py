"""The sender (`AUTOMATOR_FROM`, `from`) and the base URL of links (`AUTOMATOR_BASE_URL`,
`base_url`) are checked when the settings are read: a bad one stops every command with one
line naming where it came from, instead of a header injection or broken links in mail."""

from pathlib import Path

import pytest

from automator.config import load_settings
from automator.errors import ConfigError


def refusal(project: Path, variable: str = "", value: str = "") -> str:
    """The one-line error reading the settings gives; one about `variable` names it first."""
    with pytest.raises(ConfigError) as caught:
        load_settings(project, {variable: value} if variable else {})
    message = str(caught.value)
    assert "\n" not in message
    if variable:
        assert message.startswith(f"environment: {variable}: {value!r} ")
    return message


@pytest.mark.parametrize(
    "sender",
    [
        "Shop <news@shop.example>",
        "news@shop.example",
        '"Shop, Inc." <news@shop.example>',
        "Cửa hàng Lotus <hello@xn--lotus-shp.vn>",
        "Test <robot@localhost>",
    ],
)
def test_a_sender_with_or_without_a_name_is_accepted(tmp_path: Path, sender: str) -> None:
    assert load_settings(tmp_path, {"AUTOMATOR_FROM": sender}).sender == sender


@pytest.mark.parametrize(
    ("sender", "problem"),
    [
        ("Shop <news@shop.example>\r\nBcc: all@rivals.example", "holds a line break"),
        ("news@shop.example\n", "holds a line break"),
        ("news", "is not an email address with an optional name, such as Shop <news@shop.example>"),
        ("Shop news@shop.example", "is not an email address"),
        ("Shop <>", "is not an email address"),
        ("a@shop.example, b@shop.example", "is not one address"),
        ("Shop <news@bücher.example>", "in its xn-- form"),
    ],
)
def test_a_sender_that_is_not_one_address_is_refused_naming_the_variable(
    tmp_path: Path, sender: str, problem: str
) -> None:
    assert problem in refusal(tmp_path, "AUTOMATOR_FROM", sender)


def test_a_bad_sender_in_automator_toml_names_the_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "automator.toml").write_text('timezone = "UTC"\nfrom = "Lotus Shop"\n', encoding="utf-8")

    assert refusal(tmp_path).startswith("automator.toml:2: from: 'Lotus Shop' is not an email address")


@pytest.mark.parametrize(
    "url", ["https://shop.example", "http://127.0.0.1:8080", "https://shop.example/mail/", "http://[::1]:80"]
)
def test_an_absolute_http_url_is_accepted_as_the_base_of_links(tmp_path: Path, url: str) -> None:
    assert load_settings(tmp_path, {"AUTOMATOR_BASE_URL": url}).base_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("shop.example", "is not an absolute http:// or https:// URL"),
        ("/mail", "is not an absolute http:// or https:// URL"),
        ("ftp://shop.example", "is not an absolute http:// or https:// URL"),
        ("https://", "is not an absolute http:// or https:// URL"),
        ("javascript:alert(1)", "is not an absolute http:// or https:// URL"),
        ("https://shop.example\r\nX-Injected: 1", "holds white space or a control character"),
        ("https://shop.example ", "holds white space or a control character"),
        ("https://shop .example", "holds white space or a control character"),
        ("https://shop.example:https", "is not a URL"),
        ("https://shop.example/?utm_source=mail", "has a query or a fragment"),
        ("https://shop.example/#top", "has a query or a fragment"),
    ],
)
def test_a_base_url_links_cannot_start_with_is_refused_naming_the_variable(
    tmp_path: Path, url: str, problem: str
) -> None:
    assert problem in refusal(tmp_path, "AUTOMATOR_BASE_URL", url)


def test_a_bad_base_url_in_automator_toml_names_the_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "automator.toml").write_text('base_url = "shop.example"\n', encoding="utf-8")

    assert refusal(tmp_path).startswith("automator.toml:1: base_url: 'shop.example' is not an absolute")


def test_a_command_given_a_sender_with_a_line_break_exits_with_one_line(cli, monkeypatch) -> None:
    monkeypatch.setenv("AUTOMATOR_FROM", "Shop <news@shop.example>\nBcc: all@rivals.example")

    result = cli("tick")

    assert result.exit_code == 1
    assert result.output.startswith("error: environment: AUTOMATOR_FROM: 'Shop <news@shop.example>\\nBcc:")
    assert len(result.output.splitlines()) == 1
