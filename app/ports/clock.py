"""Time, as the states see it.

States never call ``time`` or ``threading`` for timing: they ask the injected :class:`Clock` what time
it is and to wait until a deadline or until woken. The system clock really waits; the test clock
(``tests/fakes.FakeClock``) jumps straight to the next deadline, so "advance 10 s" takes no real time.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock for deadlines, a wall clock for timestamps, and a wait that can be woken."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def wall(self) -> datetime:
        """The current time in UTC (timezone-aware), for timestamps written to files and logs."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; return whether it was set.

        Guarantee: returns no earlier than ``timeout`` unless the event is set; never clears it.
        """
        ...
