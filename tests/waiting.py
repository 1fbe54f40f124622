# transitional re-export: removed at merge (issue 12)
"""The old ``tests.waiting.wait_for(predicate, timeout, interval, message)``, on :mod:`tools.waiting`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tools import waiting

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.02, message: str = "") -> T:
    """The old argument order (``interval`` before ``message``) over :func:`tools.waiting.wait_for`."""
    return waiting.wait_for(predicate, timeout, message, interval=interval)
