"""The confirmation probe's arithmetic (bench/scenarios/cadence.py): what a ``sync`` adds to the
leader's confirming read, pair by pair; docs/BENCHMARKS.md quotes it, so it is checked like code."""

from __future__ import annotations

import pytest

from bench.scenarios.cadence import paired_cost


def test_the_cost_of_the_sync_is_the_difference_within_each_pair_not_of_the_medians() -> None:
    # A slow moment (the third pair) slows both requests of its pair: the difference stays 1 ms.
    plain = [0.001, 0.001, 0.010, 0.001, 0.001]
    synced = [0.002, 0.002, 0.011, 0.002, 0.002]
    cost = paired_cost(plain, synced)
    assert cost["extra_s"]["min"] == pytest.approx(0.001)
    assert cost["extra_s"]["max"] == pytest.approx(0.001)
    assert cost["ratio"]["p50"] == pytest.approx(2.0)
    assert cost["ratio"]["min"] == pytest.approx(1.1)
    assert cost["get_s"]["p50"] == pytest.approx(0.001)
    assert cost["sync_get_s"]["max"] == pytest.approx(0.011)


def test_pairs_of_unequal_length_are_refused() -> None:
    with pytest.raises(ValueError, match=r"shorter|longer"):
        paired_cost([0.001, 0.002], [0.002])
