"""The real clock: ``time.monotonic`` for deadlines, UTC wall time for timestamps."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(timeout, 0.0))
