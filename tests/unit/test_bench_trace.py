"""The trace scenario's pure parts: the slow round's largest gap, the variants' names; the wake-up
probe's one-in-flight protocol (a real process, a few samples)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.scenarios import trace, wakeup


def _step(name: str, start: float, duration: float, thread: str = "MainThread") -> dict[str, object]:
    return {"name": name, "start_ms": start, "duration_ms": duration, "thread": thread}


def test_the_largest_gap_is_the_longest_stretch_of_the_main_thread_between_two_steps() -> None:
    steps = [
        _step("woken", 0.2, 0.0),
        _step("watch_fired", 0.1, 0.0, thread="Thread-2"),  # not the main thread's: ignored
        _step("zk.create_leader", 0.5, 3.0),
        _step("enter Leader", 5.5, 0.3),  # 2.0 after the create's end
        _step("storage.write", 6.0, 2.0),  # 0.2 after
    ]
    gap = trace._largest_gap(steps)
    assert gap is not None
    assert (gap["after"], gap["before"]) == ("zk.create_leader", "enter Leader")
    assert gap["gap_ms"] == pytest.approx(2.0)


def test_unknown_variants_are_refused_with_the_known_ones_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_TRACE_VARIANTS", "product,nope")
    with pytest.raises(SystemExit, match=r"unknown nope .*http-poll"):
        trace._variants()
    monkeypatch.setenv("BENCH_TRACE_VARIANTS", "")
    assert trace._variants() == list(trace.DEFAULT_VARIANTS)


@pytest.mark.parametrize("third", ["none", "block", "poll"])
def test_the_wakeup_probe_measures_every_sample_once(third: str) -> None:
    out = subprocess.run(
        [sys.executable, str(wakeup.PROBE), "--gap-ms", "1", "--samples", "50", "--third", third],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    latencies = json.loads(out.stdout)["latencies_s"]
    assert len(latencies) == 50
    # one wake-up in flight at a time: each latency is its own set()'s (a lost one would hang)
    assert all(0 <= v < 1.0 for v in latencies)
