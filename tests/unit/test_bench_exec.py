"""The exec benchmark's arithmetic (bench/scenarios/exec_work.py) on synthetic rounds: the overlap
figures in docs/BENCHMARKS.md come from it, so it is checked like code, not trusted."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from bench.common import proc_stat
from bench.etcd import prefix_end
from bench.scenarios._heartbeats import holder_of
from bench.scenarios.exec_work import read_beats, round_figures, running, summarise

T0 = 1000.0


def test_a_clean_hand_over_has_a_gap_and_no_overlap() -> None:
    row = round_figures(
        T0, old_last_beat=T0 + 0.004, old_dead_at=T0 + 0.006, new_first_beat=T0 + 0.050, ended_at=T0 + 0.051
    )
    assert row["child_dead_s"] == pytest.approx(0.006)
    assert row["child_last_beat_s"] == pytest.approx(0.004)
    assert row["successor_started_s"] == pytest.approx(0.050)
    assert row["gap_s"] == pytest.approx(0.046)
    assert row["overlap"] is False
    assert row["overlap_s"] == 0.0
    assert row["still_running_at_end"] is False


def test_an_old_child_that_beat_after_the_successor_started_overlapped_by_that_much() -> None:
    row = round_figures(
        T0, old_last_beat=T0 + 5.0, old_dead_at=T0 + 5.01, new_first_beat=T0 + 4.0, ended_at=T0 + 5.02
    )
    assert row["overlap"] is True
    assert row["overlap_s"] == pytest.approx(1.0)
    assert row["gap_s"] == pytest.approx(-1.0)


def test_an_old_child_still_running_at_the_end_overlaps_until_the_end() -> None:
    row = round_figures(
        T0, old_last_beat=T0 + 29.99, old_dead_at=None, new_first_beat=T0 + 4.0, ended_at=T0 + 30.0
    )
    assert row["child_dead_s"] is None
    assert row["still_running_at_end"] is True
    assert row["overlap"] is True
    assert row["overlap_s"] == pytest.approx(26.0)


def test_no_successor_is_no_overlap_but_is_recorded() -> None:
    row = round_figures(
        T0, old_last_beat=T0 + 30.0, old_dead_at=None, new_first_beat=None, ended_at=T0 + 30.0
    )
    assert row["overlap"] is False
    assert row["overlap_s"] is None
    assert row["successor_started_s"] is None
    assert row["gap_s"] is None


def test_summarise_counts_rounds_and_takes_percentiles_of_what_was_measured() -> None:
    rows = [
        dict(round_figures(T0, T0 + 0.9, T0 + 1.0, T0 + 4.0, T0 + 4.0), survived_heal=False),
        round_figures(T0, T0 + 1.9, T0 + 2.0, T0 + 3.0, T0 + 3.0),
        dict(round_figures(T0, T0 + 30.0, None, T0 + 4.0, T0 + 30.0), survived_heal=True, holder_killed=True),
    ]
    s = summarise(rows)
    assert s["rounds"] == 3
    assert s["child_dead_s"]["n"] == 2  # the one still running has no death time
    assert s["child_dead_s"]["max"] == pytest.approx(2.0)
    assert s["still_running_at_end"] == 1
    assert s["survived_heal"] == 1
    assert s["holder_killed"] == 1
    assert s["overlap_rounds"] == 1
    assert s["overlap_s"]["max"] == pytest.approx(26.0)
    assert s["successor_started_s"]["p50"] == pytest.approx(4.0)
    assert s["no_successor"] == 0


def test_beats_skip_the_header_and_a_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "hb-42-1.log"
    path.write_text('1.000000\n#{"pid": 42}\n1.010000\n1.02')
    assert read_beats(path) == [1.0, 1.01]
    assert read_beats(tmp_path / "hb-43-1.log") == []


def test_an_etcd_prefix_range_ends_just_past_the_prefix() -> None:
    assert prefix_end(b"/bench/exec/etcd/") == b"/bench/exec/etcd0"


def test_a_reused_pid_is_not_the_child_of_an_old_heartbeat_file(tmp_path: Path) -> None:
    # This very process stands in for a later process that got a dead child's pid.
    fields = proc_stat(os.getpid())
    assert fields is not None
    path = tmp_path / f"hb-{os.getpid()}-1.log"
    path.write_text(f'1.0\n#{{"pid": {os.getpid()}, "starttime": "{fields[19]}"}}\n')
    assert running(path)
    other = tmp_path / f"hb-{os.getpid()}-2.log"
    other.write_text(f'1.0\n#{{"pid": {os.getpid()}, "starttime": "{int(fields[19]) - 1}"}}\n')
    assert not running(other)


def test_a_child_under_a_supervising_shell_is_held_by_the_shell_s_parent(tmp_path: Path) -> None:
    # As the app runs its command: wrapper -> /bin/sh (supervisor) -> the heartbeat child.
    shell = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 30 & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert shell.stdout is not None
        child = int(shell.stdout.readline())
        path = tmp_path / f"hb-{child}-1.log"
        path.write_text("")
        assert holder_of(path, [os.getpid()]) == os.getpid()  # two levels up
        assert holder_of(path, [shell.pid, os.getpid()]) == shell.pid  # the nearest holder wins
        assert holder_of(path, [1 << 30]) is None
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
