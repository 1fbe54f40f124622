"""Go durations: what time.ParseDuration accepts and refuses, and Duration.String's rendering."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h2m3.5s", 3723.5),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("1h", 3600.0),
        ("2m", 120.0),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("100μs", 1e-4),  # Greek mu, which Go accepts as well as the micro sign
        ("5ns", 5e-9),
        ("1.s", 1.0),
        ("+5s", 5.0),
        ("1s500ms", 1.5),
        ("1m1m", 120.0),  # Go adds repeated units
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


def test_a_leading_minus_parses_to_a_negative_duration() -> None:
    assert parse_duration("-1s") == -1.0


def test_a_negative_compound_duration_negates_the_whole() -> None:
    assert parse_duration("-1m30s") == -90.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "10",
        "s",
        "10x",
        "1m30",
        "-",
        "+",
        "--1s",
        "1h-1m",
        "1 s",
        "ms",
        "1.5",
        ".s",
        "1e3s",
        "1S",
        "0x10s",
    ],
)
def test_refuses_malformed_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_duration_error_message_quotes_the_text() -> None:
    with pytest.raises(DurationError, match="'10x'"):
        parse_duration("10x")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (10.0, "10s"),
        (90.0, "1m30s"),
        (0.25, "250ms"),
        (3723.5, "1h2m3.5s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (60.0, "1m0s"),
        (3600.0, "1h0m0s"),
        (1.5e-6, "1.5µs"),
        (5e-9, "5ns"),
        (-1.0, "-1s"),
        (3600.00001, "1h0m0.00001s"),
    ],
)
def test_formats_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["10s", "1m30s", "250ms", "1h2m3.5s", "1.5s", "0s", "1µs", "7ns", "-2m0s"])
def test_go_written_durations_round_trip_through_format(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_parse_of_format_gives_back_the_duration_to_the_nanosecond(seconds: float) -> None:
    again = parse_duration(format_duration(seconds))
    assert math.isclose(again, seconds, rel_tol=1e-12, abs_tol=1e-9), (seconds, format_duration(seconds))


@given(st.text())
def test_any_text_parses_or_raises_duration_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except DurationError:
        return
    assert isinstance(value, float)
