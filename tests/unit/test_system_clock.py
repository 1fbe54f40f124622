"""The real clock: leases are measured on a clock that counts a suspended host's sleep."""

from __future__ import annotations

import sys
import time

import pytest

from app.adapters import system_clock
from app.adapters.system_clock import SystemClock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CLOCK_BOOTTIME is Linux's")
def test_monotonic_is_clock_boottime_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    real = time.clock_gettime

    def spy(clock_id: int) -> float:
        asked.append(clock_id)
        return real(clock_id)

    monkeypatch.setattr(time, "clock_gettime", spy)
    clock = SystemClock()
    asked.clear()
    first = clock.monotonic()
    assert asked == [time.CLOCK_BOOTTIME]
    # the same clock as the kernel's, and it does not go back
    assert abs(first - real(time.CLOCK_BOOTTIME)) < 1.0
    assert clock.monotonic() >= first


def test_falls_back_to_time_monotonic_without_clock_boottime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(time, "CLOCK_BOOTTIME", raising=False)
    assert system_clock._boottime() is time.monotonic


def test_falls_back_when_the_kernel_lacks_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(clock_id: int) -> float:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(time, "CLOCK_BOOTTIME", 7, raising=False)
    monkeypatch.setattr(time, "clock_gettime", refuse)
    assert system_clock._boottime() is time.monotonic


def test_wall_is_utc() -> None:
    assert SystemClock().wall().utcoffset() is not None
    assert SystemClock().wall().utcoffset().total_seconds() == 0  # type: ignore[union-attr]
