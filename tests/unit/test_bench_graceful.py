"""The graceful scenario's arithmetic (bench/scenarios/graceful.py, issue 13): which groups run at
which N, the ratios to kazoo (of the distributions and round by round) and the targets' verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fleet import APP, APP_COMPARE, KAZOO, POLLER
from bench.scenarios.graceful import flavours_at, report, summarise_n, targets


def _rows(flavour: str, times: list[float], n: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "flavour": flavour,
            "n": n,
            "round": r,
            "handover_s": t,
            "stamped_s": t - 0.002,
            "node_deleted_s": 0.01,
            "takeover_s": t - 0.01,
            "takeover_stamped_s": t - 0.012,
            "exit_code": 0,
        }
        for r, t in enumerate(times)
    ]


def test_the_poller_runs_at_n_3_only_and_the_compare_group_only_when_asked() -> None:
    assert flavours_at(3, compare=False) == [APP, KAZOO, POLLER]
    assert flavours_at(10, compare=False) == [APP, KAZOO]
    assert flavours_at(100, compare=True) == [APP, APP_COMPARE, KAZOO]


def test_the_ratios_are_of_the_distributions_and_round_by_round() -> None:
    # Round 0 is slow for both (a slow patch of the machine): the paired ratio sees 1.0 there,
    # the distributions do not pair it.
    app = _rows("app", [0.10, 0.30, 0.50, 1.00])
    kazoo = _rows("kazoo", [0.10, 0.20, 0.40, 0.50])
    by = summarise_n(app + kazoo, ["app", "kazoo"])
    assert by["ratio_to_kazoo"]["app"]["p50"] == pytest.approx(0.40 / 0.30)
    assert by["ratio_to_kazoo"]["kazoo"]["p50"] == pytest.approx(1.0)
    pairs = by["paired_to_kazoo"]["app"]
    assert pairs["n"] == 4
    assert pairs["min"] == pytest.approx(1.0)
    assert pairs["max"] == pytest.approx(2.0)
    assert pairs["p50"] == pytest.approx((1.5 + 1.25) / 2)
    assert by["stamped_s"]["app"]["p50"] == pytest.approx(0.398)


def test_the_targets_need_both_the_distribution_and_the_paired_ratios() -> None:
    within = {"p50": 1.05, "p95": 1.4}
    assert targets(within, within)["met"] is True
    assert targets(within, {"p50": 1.05, "p95": 1.6}) == {
        "p50_dist": True,
        "p95_dist": True,
        "p50_paired": True,
        "p95_paired": False,
        "met": False,
    }
    assert targets({"p50": 1.11, "p95": 1.0}, within)["p50_dist"] is False
    assert targets(within, {"p50": float("nan"), "p95": float("nan")})["met"] is False


def test_the_compare_group_is_paired_with_the_app_and_judged_like_it() -> None:
    rows = (
        _rows("app", [0.2, 0.2, 0.2])
        + _rows("app_compare", [0.1, 0.1, 0.1])
        + _rows("kazoo", [0.2, 0.2, 0.2])
    )
    by = summarise_n(rows, ["app", "app_compare", "kazoo"])
    assert by["paired_app_to_app_compare"]["p50"] == pytest.approx(2.0)
    assert by["ratio_app_to_app_compare"]["p95"] == pytest.approx(2.0)
    assert set(by["targets"]) == {"app", "app_compare"}  # kazoo is not judged against itself
    assert by["targets"]["app"]["met"] is True


def test_the_report_has_one_row_per_n_and_flavour_and_says_which_ratio_a_verdict_used() -> None:
    rows3 = _rows("app", [0.1, 0.1], 3) + _rows("kazoo", [0.1, 0.1], 3) + _rows("poller", [1.0, 1.0], 3)
    rows10 = _rows("app", [0.3, 0.3]) + _rows("kazoo", [0.1, 0.1])
    rtt = {"read_s": {"p50": 0.001, "p95": 0.002}, "create_s": {"p50": 0.002, "p95": 0.003}}
    result = {
        "config": {
            "flavours_by_n": {"3": ["app", "kazoo", "poller"], "10": ["app", "kazoo"]},
            "visible_by": "inotify",
        },
        "summary": {
            "by_n": {
                "3": summarise_n(rows3, ["app", "kazoo", "poller"]),
                "10": summarise_n(rows10, ["app", "kazoo"]),
            },
            "kazoo_round_trip_s": rtt,
        },
    }
    text = report(result)
    lines = [line for line in text.splitlines() if line.startswith(("election", "kazoo", "naive"))]
    assert len(lines) == 5
    assert "dist/paired" in text
    assert "met/met" in lines[0]
    assert "MISSED/MISSED" in lines[3]  # app at N=10: 3x kazoo


def test_an_old_result_is_reported_as_such_not_as_a_crash() -> None:
    assert "before issue 13" in report({"config": {}, "summary": {"handover_s": {}}})
