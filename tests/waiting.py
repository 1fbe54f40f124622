"""Polling helper for tests: wait for a condition instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.02, message: str = "") -> T:
    """Call ``predicate`` every ``interval`` s until it returns a truthy value; return that value.

    The predicate is always evaluated at least once and once more at the
    deadline.  Raises AssertionError naming ``message`` (or the predicate) and
    the last value seen if it never becomes truthy within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:.2f}s waiting for {what} (last value: {value!r})")
        time.sleep(min(interval, remaining))
