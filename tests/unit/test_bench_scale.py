"""The scale scenario's arithmetic (bench/scenarios/scale.py): with both groups alive at once
(issue 13), a hand-over's window holds the other group's idle looks too, so the steady rate taken
out of it is the one measured with both alive; kazoo's own steady rates are the difference."""

from __future__ import annotations

from typing import Any

import pytest

from bench.scenarios.scale import by_n, group_net_requests, steady_difference


def _group(flavour: str, n: int, visible: float, stamped: float) -> dict[str, Any]:
    def dist(value: float) -> dict[str, float]:
        return {"p50": value, "p95": value * 2}

    return {
        "flavour": flavour,
        "n": n,
        "steady": {"non_ping_requests_per_s": 1.0, "transactions_per_s": 0.0},
        "steady_window": {"non_ping_requests_per_s": 3.0},
        "handover_s": dist(visible),
        "stamped_s": dist(stamped),
        "transactions": {"p50": 4.0},
        "notifications": {"p50": 2.0},
    }


def test_net_requests_take_out_the_steady_rate_of_both_groups_alive() -> None:
    group = _group("app", 50, 0.02, 0.01)
    rows = [{"flavour": "app", "n": 50, "zk_requests": 10, "zk_seconds": 2.0}]
    # 10 requests in a 2 s window, 3/s idle with both groups alive: 4 are the hand-over's own
    # (with the app's group alone, 1/s, it would have said 8).
    assert group_net_requests(group, rows)["p50"] == pytest.approx(4.0)


def test_kazoos_own_steady_rates_are_both_alive_less_the_app_alone() -> None:
    alone = {
        "requests_by_type_per_s": {"getData": 1.0, "ping": 2.0},
        "non_ping_requests_per_s": 1.0,
        "seconds": 20.0,
        "zk_cpu_cores": 0.02,
        "sessions": 50,
    }
    both = {
        "requests_by_type_per_s": {"getData": 1.5, "ping": 4.0, "exists": 0.5},
        "non_ping_requests_per_s": 2.0,
        "seconds": 20.1,
        "zk_cpu_cores": 0.01,  # noise can make both read lower than one: never below zero
        "sessions": 101,
    }
    own = steady_difference(both, alone)
    assert own["requests_by_type_per_s"] == {"exists": 0.5, "getData": 0.5, "ping": 2.0}
    assert own["non_ping_requests_per_s"] == pytest.approx(1.0)
    assert own["seconds"] == 20.1
    assert own["zk_cpu_cores"] == 0.0
    assert own["sessions"] == 51


def test_by_n_gives_the_distribution_and_the_paired_ratios_of_the_visible_and_stamped_times() -> None:
    groups = [_group("app", 3, 0.03, 0.02), _group("kazoo", 3, 0.01, 0.01)]
    rows = [
        {"flavour": "app", "n": 3, "round": 0, "handover_s": 0.03, "stamped_s": 0.02},
        {"flavour": "kazoo", "n": 3, "round": 0, "handover_s": 0.01, "stamped_s": 0.01},
        {"flavour": "app", "n": 3, "round": 1, "handover_s": 0.02, "stamped_s": 0.02},
        {"flavour": "kazoo", "n": 3, "round": 1, "handover_s": 0.02, "stamped_s": 0.01},
    ]
    out = by_n(groups, rows, [3])["3"]
    assert out["ratio_p50_app_to_kazoo"] == pytest.approx(3.0)
    assert out["ratio_p95_app_to_kazoo"] == pytest.approx(3.0)
    assert out["ratio_p50_stamped_app_to_kazoo"] == pytest.approx(2.0)
    assert out["paired_app_to_kazoo"]["min"] == pytest.approx(1.0)
    assert out["paired_app_to_kazoo"]["max"] == pytest.approx(3.0)
    assert out["paired_stamped_app_to_kazoo"]["p50"] == pytest.approx(2.0)
