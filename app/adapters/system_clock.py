"""The real clock: a monotonic clock that keeps counting while the host is suspended, for deadlines
and leases; UTC wall time for timestamps.

Why not ``time.monotonic``: on Linux it is ``CLOCK_MONOTONIC``, which stops while the machine is
suspended (a laptop's lid, a VM paused by its hypervisor, a live migration). ZooKeeper's clock does
not stop: a leader suspended for 30 s would wake up believing that only the time before the
suspension had passed, and act on a lease that the server had long since expired.
``CLOCK_BOOTTIME`` counts the suspension too. Where the platform has no such clock, this falls back
to ``time.monotonic`` (and the lease is then only as good as that clock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


def _boottime() -> Callable[[], float]:
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is None:
        return time.monotonic
    try:
        time.clock_gettime(clock_id)
    except OSError:  # a kernel that defines the constant but not the clock
        return time.monotonic
    return lambda: time.clock_gettime(clock_id)


class SystemClock:
    """Implements :class:`app.ports.clock.Clock`; ``monotonic`` is ``CLOCK_BOOTTIME`` on Linux.

    ``wait`` sleeps on the event (whose timeout runs on ``CLOCK_MONOTONIC``): after a suspension it
    may return late, never early by this clock, and every caller re-reads :meth:`monotonic` and its
    deadline after waking, so a late return only makes a leader confirm again.
    """

    def __init__(self) -> None:
        self._now = _boottime()

    def monotonic(self) -> float:
        return self._now()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(timeout, 0.0))
