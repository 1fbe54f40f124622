"""Go-style durations (``10s``, ``1m30s``, ``250ms``), as the assignment's users write them.

Parsing follows Go's ``time.ParseDuration``: a sequence of decimal numbers, each with an optional
fraction and a unit (``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``, ``h``). A bare ``0`` is accepted by
Go; callers that need a positive duration check that themselves.
"""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    """The text is not a Go duration."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise :class:`DurationError` when ``text`` is malformed."""
    raw = text.strip()
    if not raw:
        raise DurationError("empty duration")
    sign = 1.0
    body = raw
    if body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise DurationError(f"{text!r} is not a duration")
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            raise DurationError(f"{text!r} is not a duration like 10s, 1m30s or 250ms")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Render seconds the way Go prints a duration (``1m30s``, ``250ms``, ``0s``), to the nanosecond.

    Like Go's ``Duration.String``: rounded to whole nanoseconds, exact digits (never an exponent),
    so that :func:`parse_duration` reads back the same value.
    """
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000:
        return f"{sign}{nanos}ns"
    if nanos < 1_000_000:
        return f"{sign}{_decimal(nanos, 3)}µs"
    if nanos < 1_000_000_000:
        return f"{sign}{_decimal(nanos, 6)}ms"
    whole, fraction = divmod(nanos, 1_000_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _decimal(secs * 1_000_000_000 + fraction, 9) + "s"


def _decimal(value: int, places: int) -> str:
    """``value / 10**places`` in plain decimal, without trailing zeros: ``_decimal(1500, 3) == "1.5"``."""
    whole, fraction = divmod(value, 10**places)
    digits = f"{fraction:0{places}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)
