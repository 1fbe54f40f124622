"""The cadence benchmark's arithmetic (bench/scenarios/cadence.py) on synthetic timelines: the
numbers in docs/BENCHMARKS.md come from it, so it is checked like code, not trusted."""

from __future__ import annotations

import pytest

from bench.scenarios.cadence import analyse, breakdown

PERIOD = 0.010


def _event(name: str, start: float, end: float) -> dict[str, object]:
    return {"name": name, "start": start, "end": end, "thread": "MainThread"}


def test_a_read_sent_ahead_that_returns_before_the_slot_costs_the_tick_nothing() -> None:
    origin = 100.0
    trace = []
    for k in range(1, 4):
        slot = origin + k * PERIOD
        trace.append(_event("zk.leader", slot - 0.005, slot - 0.004))  # 1 ms read, sent 5 ms ahead
        trace.append(_event("storage.write", slot + 0.0002, slot + 0.0012))
    b = breakdown(trace, origin, PERIOD, 3)
    assert b["confirm_ahead_s"]["p50"] == pytest.approx(0.005)
    assert b["confirm_read_s"]["p50"] == pytest.approx(0.001)
    assert b["confirm_overrun_s"]["max"] == 0.0
    assert b["wake_after_slot_s"]["p50"] == pytest.approx(0.0002)
    assert b["ticks_over_5ms_late_by_main_cause"] == {"wake-up": 0, "confirm read": 0}


def test_a_read_that_overruns_the_slot_is_blamed_for_the_late_tick() -> None:
    origin = 100.0
    slot = origin + PERIOD
    trace = [
        _event("zk.leader", slot - 0.005, slot + 0.007),  # 12 ms read: 7 ms past the slot
        _event("storage.write", slot + 0.0075, slot + 0.0085),
    ]
    b = breakdown(trace, origin, PERIOD, 1)
    assert b["confirm_overrun_s"]["p50"] == pytest.approx(0.007)
    assert b["wake_after_slot_s"]["p50"] == pytest.approx(0.0005)
    assert b["ticks_over_5ms_late_by_main_cause"] == {"wake-up": 0, "confirm read": 1}


def test_period_error_lateness_missed_ticks_and_drift() -> None:
    origin = 0.0
    # on the grid, except one write 3 ms late and one slot missed (slot 4)
    times = [0.0, 0.010, 0.023, 0.030, 0.050, 0.060]
    a = analyse(times, PERIOD, origin)
    assert a["missed_ticks"] == 1
    assert a["lateness_s"]["max"] == pytest.approx(0.003)
    assert a["interval_abs_error_s"]["max"] == pytest.approx(0.003)
    assert abs(a["drift_s_per_1000_ticks"]) < 0.5
    # a loop that falls 1 ms behind per tick drifts 1 s per 1,000 ticks
    sliding = [k * (PERIOD + 0.001) for k in range(100)]
    assert analyse(sliding, PERIOD)["drift_s_per_1000_ticks"] == pytest.approx(1.0)
