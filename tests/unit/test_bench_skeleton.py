"""The benchmark's scenario skeleton (bench/scenarios/_skeleton.py): the order of the rounds, the
round-by-round pairing, the guarantee that every launched group is stopped, the result's shape."""

from __future__ import annotations

from typing import Any

import pytest

from bench.scenarios._skeleton import (
    ALTERNATE,
    IN_TURN,
    ROTATE,
    fleet_config,
    fraction,
    launched,
    make_result,
    measure,
    paired,
    per,
    schedule,
    spread,
    spread_header,
    verdict,
)


def test_rotate_puts_each_item_first_once_per_cycle_and_every_item_once_per_round() -> None:
    turns = list(schedule(["app", "kazoo", "poller"], 3, ROTATE))
    by_round = [[item for r, item in turns if r == k] for k in range(3)]
    assert by_round == [["app", "kazoo", "poller"], ["kazoo", "poller", "app"], ["poller", "app", "kazoo"]]


def test_alternate_runs_a_pair_back_to_back_across_rounds() -> None:
    assert list(schedule(["app", "kazoo"], 3, ALTERNATE)) == [
        (0, "app"),
        (0, "kazoo"),
        (1, "kazoo"),
        (1, "app"),
        (2, "app"),
        (2, "kazoo"),
    ]


def test_in_turn_keeps_the_declared_order() -> None:
    assert [m for _r, m in schedule(["freeze", "cut"], 2, IN_TURN)] == ["freeze", "cut", "freeze", "cut"]


def test_measure_tags_each_row_with_its_round_in_the_order_measured() -> None:
    calls: list[tuple[str, int]] = []

    def step(item: str, r: int) -> dict[str, Any]:
        calls.append((item, r))
        return {"flavour": item, "handover_s": 0.1}

    rows = measure(["app", "kazoo"], 2, step)
    assert calls == [("app", 0), ("kazoo", 0), ("kazoo", 1), ("app", 1)]
    assert [(r["flavour"], r["round"]) for r in rows] == calls


def test_paired_matches_rows_by_round_not_by_position() -> None:
    # kazoo lost round 0 and its rows come in another order: pairing by position would divide
    # app's round 0 by kazoo's round 1.
    app = [{"round": 0, "handover_s": 1.0}, {"round": 1, "handover_s": 4.0}, {"round": 2, "handover_s": 9.0}]
    kazoo = [{"round": 2, "handover_s": 3.0}, {"round": 1, "handover_s": 2.0}]
    pairs = paired(app, kazoo, "handover_s")
    assert pairs["n"] == 2
    assert pairs["min"] == pytest.approx(2.0)
    assert pairs["max"] == pytest.approx(3.0)


def test_paired_leaves_out_rounds_without_the_figure() -> None:
    a = [{"round": 0, "x": 2.0}, {"round": 1, "x": None}]
    b = [{"round": 0, "y": 1.0}, {"round": 1, "y": 1.0}]
    assert paired(a, b, "x", "y")["n"] == 1


class FakeGroup:
    def __init__(self, name: str, log: list[str], fail_start: bool = False) -> None:
        self.name, self.log, self.fail_start = name, log, fail_start

    def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError(f"{self.name} did not start")

    def stop(self, timeout: float = 20.0) -> None:
        self.log.append(f"stop {self.name} {timeout:g}")


def test_launched_stops_every_group_when_one_fails_to_start() -> None:
    log: list[str] = []
    groups = [FakeGroup("a", log), FakeGroup("b", log, fail_start=True), FakeGroup("c", log)]
    with pytest.raises(RuntimeError, match="b did not start"), launched(*groups, start=FakeGroup.start):  # type: ignore[arg-type]
        pytest.fail("the body must not run")
    assert log == ["start a", "start b", "stop a 20", "stop b 20", "stop c 20"]


def test_launched_stops_every_group_when_the_rounds_fail() -> None:
    log: list[str] = []
    groups = [FakeGroup("a", log), FakeGroup("b", log)]
    with pytest.raises(TimeoutError), launched(*groups, start=None, stop_timeout=60.0):  # type: ignore[arg-type]
        log.append("rounds")
        raise TimeoutError("no new leader")
    assert log == ["rounds", "stop a 60", "stop b 60"]


class FakeContext:
    def note_window(self, started: float) -> dict[str, Any]:
        return {"since": started}


def test_make_result_has_the_keys_every_scenario_json_has() -> None:
    out = make_result(FakeContext(), 5.0, config={"n": 3}, summary={"x": 1}, rounds=[{"round": 0}], steady={})  # type: ignore[arg-type]
    assert out == {
        "config": {"n": 3},
        "summary": {"x": 1},
        "steady": {},
        "load": {"since": 5.0},
        "rounds": [{"round": 0}],
    }


def test_fleet_config_records_the_fleet_defaults_beside_the_scenario_s_own_settings() -> None:
    assert fleet_config(3, sizes=[3, 10]) == {
        "rounds": 3,
        "app_flags": {"attempter-timeout": "10s", "leader-timeout": "1s", "zk-session-timeout": "4s"},
        "zk_tick_ms": 200,
        "sizes": [3, 10],
    }


def test_per_summarises_each_name_over_its_rows_only() -> None:
    rows = [
        {"flavour": "app", "t": 1.0},
        {"flavour": "app", "t": 3.0},
        {"flavour": "kazoo", "t": 10.0},
        {"flavour": "kazoo", "t": None},
    ]
    stats = per(rows, "t", ["app", "kazoo", "poller"])
    assert (stats["app"]["n"], stats["app"]["p50"]) == (2, 2.0)
    assert (stats["kazoo"]["n"], stats["kazoo"]["max"]) == (1, 10.0)
    assert stats["poller"]["n"] == 0


def test_report_cells() -> None:
    st = {"min": 0.001, "p50": 0.002, "p95": 0.003, "max": 0.004}
    assert spread(st) == ["1.0", "2.0", "3.0", "4.0"]
    assert spread(st, ("p50", "max"), lambda v: f"{v:.3f}") == ["0.002", "0.004"]
    assert spread_header() == ["min ms", "p50 ms", "p95 ms", "max ms"]
    assert spread_header(("p50", "max"), "s") == ["p50 s", "max s"]
    assert (verdict(True), verdict(False), fraction(3, 4)) == ("met", "MISSED", "3/4")
