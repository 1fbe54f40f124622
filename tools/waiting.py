"""Waiting on a condition with a deadline: the one poll loop of the kit, the tests and the bench.

Nothing that runs the system for real sleeps a fixed time and hopes; it asks a predicate until the
predicate answers or a deadline passes. Two shapes of the same loop:

- :func:`wait_for` returns the first truthy answer and raises :class:`WaitTimeoutError` naming what was
  awaited (and the last answer) when the deadline passes: for tests and benchmarks, where a missed
  deadline is a failure;
- :func:`poll_until` returns ``None`` instead: for code that has its own way of reporting (a server
  that did not start says why from its log).

The predicate is always asked at least once, and once more at the deadline, so a zero timeout is a
single look and a condition that turns true just before the deadline is not missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often a predicate is asked unless the caller says otherwise: fine enough for hand-overs of a
#: few milliseconds, coarse enough not to load a 2-core machine running several replicas.
INTERVAL = 0.01


class WaitTimeoutError(AssertionError, TimeoutError):
    """A deadline passed before the condition held.

    An ``AssertionError`` so that pytest reports it as a failed expectation, and a ``TimeoutError``
    so that a benchmark can tell it from a bug in its own code.
    """


def poll_until(predicate: Callable[[], T | None], deadline: float, interval: float = INTERVAL) -> T | None:
    """Ask ``predicate`` until it returns a truthy value (returned) or ``deadline`` passes (``None``).

    ``deadline`` is a ``time.monotonic()`` instant. The last look happens at or after the deadline;
    the loop never sleeps past it by more than one scheduler slice.
    """
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str = "", *, interval: float = INTERVAL
) -> T:
    """Return the first truthy value of ``predicate`` within ``timeout`` seconds.

    Raises :class:`WaitTimeoutError` naming ``what`` (or the predicate's name) and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: list[T | None] = []

    def ask() -> T | None:
        value = predicate()
        last[:] = [value]
        return value

    value = poll_until(ask, deadline, interval)
    if value:
        return value
    name = what or getattr(predicate, "__qualname__", repr(predicate))
    seen = last[0] if last else None
    raise WaitTimeoutError(f"timed out after {timeout:.2f}s waiting for {name} (last value: {seen!r})")
