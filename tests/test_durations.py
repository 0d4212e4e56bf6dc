"""Durations as marketers write them in rule files: parsed once, spelled back the same way."""

from datetime import timedelta

import pytest

from automator.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", timedelta(hours=1)),
        ("30m", timedelta(minutes=30)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_marketer_durations_parse_to_timedeltas(text, expected):
    assert parse_duration(text) == expected


def test_spaces_between_parts_are_ignored():
    assert parse_duration("1h 30m") == timedelta(hours=1, minutes=30)


def test_a_timedelta_passes_through_unchanged():
    assert parse_duration(timedelta(days=2)) == timedelta(days=2)


def test_words_are_rejected_with_a_hint_showing_the_short_forms():
    with pytest.raises(ValueError) as raised:
        parse_duration("1 hour")
    assert str(raised.value) == '"1 hour" is not a duration (use 1h, 30m, 3d)'


@pytest.mark.parametrize("text", ["", "0", "h", "-1h", "1H", "1.5h", "1y"])
def test_malformed_durations_are_rejected(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_a_bare_number_is_rejected_because_it_has_no_unit():
    with pytest.raises(ValueError) as raised:
        parse_duration(3600)
    assert str(raised.value) == "3600 is not a duration (use 1h, 30m, 3d)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(hours=1), "1h"),
        (timedelta(minutes=30), "30m"),
        (timedelta(days=3), "3d"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(hours=1, minutes=30, seconds=5), "1h30m5s"),
        (timedelta(0), "0s"),
    ],
)
def test_durations_are_formatted_in_the_marketers_spelling(value, expected):
    assert format_duration(value) == expected


@pytest.mark.parametrize("text", ["1h", "30m", "3d", "2w", "1d12h", "90m", "36h"])
def test_formatting_a_parsed_duration_reads_back_as_the_same_duration(text):
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["36526d", "5218w", "1000000000d", "99999999999999999999d", "36525d1s"])
def test_a_duration_beyond_a_hundred_years_is_refused(text):
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    assert str(raised.value) == f'"{text}" is too long: at most 36525d (a hundred years)'


def test_a_hundred_years_is_still_a_duration():
    assert parse_duration("36525d") == timedelta(days=36525)
