"""Healthy means work done: a cluster that cannot publish anything ends loud, and does not spin.

Issue 9, item 7: with the fence corrupted or its lock held by a foreign process, replicas used to
make 86 terms and 0 files in 35 s and never exit, because a standby counted itself healthy
whenever *some* leader held the node. Now a standby judges by the directory's publish counter.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.machine import StateName
from app.states.failover import max_terms
from app.states.progress import stall_grace
from tests.fakes import START, FakeZooKeeper
from tests.unit.conftest import Harness, keep_publishing, other_leader


def test_a_standby_behind_a_leader_that_publishes_nothing_exits_with_status_1(harness: Harness) -> None:
    # leader-timeout 10 s, attempter-timeout 10 s: grace 30 s; failover-timeout 60 s
    other_leader(harness.server, "idle")
    seen: dict[float, tuple[bool, str]] = {}
    for when in (25.0, 35.0):
        harness.at(when, lambda when=when: seen.__setitem__(when, harness.replica.ready()))
    harness.stop_at(500.0)
    assert harness.run() == 1
    # looks at 0, 10, ..., 60: stalled since the start (0), so it gives up at the look at 60 s
    assert harness.clock.elapsed == pytest.approx(60.0)
    assert seen[25.0] == (True, "connected to ZooKeeper")
    assert seen[35.0][0] is False
    assert "no file published for 30s although idle (epoch 101) leads" in seen[35.0][1]
    assert harness.metric("election_state_transitions_total", **{"from": "Attempter", "to": "Stopping"}) == 1


def test_a_standby_behind_a_leader_that_publishes_stays_ready_and_waits(harness: Harness) -> None:
    other_leader(harness.server, "busy")
    keep_publishing(harness, every=10.0)
    seen = harness.seen_at(harness.replica.ready, 490.0)
    harness.stop_at(500.0)
    assert harness.run() == 0
    assert seen == [(True, "connected to ZooKeeper")]


def test_a_leader_that_publishes_slower_than_the_grace_is_not_taken_for_stalled(make_harness) -> None:  # type: ignore[no-untyped-def]
    # one file a minute, a look every 10 s: the grace (2 x 60 + 10 s) covers the gaps
    h = make_harness(leader_timeout=60.0, failover_timeout=30.0)
    other_leader(h.server, "slow")
    keep_publishing(h, every=60.0)
    h.stop_at(1000.0)
    assert h.run() == 0
    assert stall_grace(h.replica.ctx) == 130.0


def _rival_that_grabs_the_free_node_and_fails(harness: Harness, holds: float) -> Callable[[], None]:
    """Another replica whose storage is as broken as ours: whenever the node is free it takes it,
    publishes nothing, and resigns ``holds`` seconds later."""

    def poll() -> None:
        if harness.server.leader is None:
            other_leader(harness.server, "rival")
            harness.clock.call_later(holds, harness.server.delete_leader_by_hand)
        harness.clock.call_later(0.05, poll)

    return poll


def test_a_cluster_whose_storage_refuses_every_write_exits_within_the_bound_without_spinning(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h: Harness = make_harness(
        server=FakeZooKeeper(),
        leader_timeout=0.1,
        attempter_timeout=1.0,
        failover_timeout=8.0,
        failover_backoff_max=5.0,
    )
    h.storage.fail_writes = 10**9  # every write fails, ours and (by construction) the rival's
    h.clock.call_later(0.5, _rival_that_grabs_the_free_node_and_fails(h, holds=0.3))
    h.stop_at(600.0)
    assert h.run() == 1
    settings = h.replica.settings
    bound = max(settings.failover_timeout, stall_grace(h.replica.ctx)) + settings.attempter_timeout
    assert h.clock.elapsed <= bound
    terms = h.metric("election_leadership_acquired_total")
    assert terms is not None and 2 <= terms <= max_terms(settings.failover_timeout, 5.0) == 6
    assert h.storage.written == []
    assert h.replica.machine.state is StateName.STOPPING


def test_terms_per_run_of_failures_are_bounded_by_the_backoffs_that_fit() -> None:
    # backoffs 0.25, 0.5, 1, 2, 4 (7.75 s) fit in 8 s, the next (5 s) does not: 1 + 5 terms
    assert max_terms(8.0, 5.0) == 6
    # the defaults: 60 s and a 5 s cap
    assert max_terms(60.0, 5.0) == 16
    assert max_terms(0.1, 5.0) == 1


def test_a_standby_that_sees_the_counter_move_again_heals(harness: Harness) -> None:
    other_leader(harness.server, "flaky")
    seen = harness.seen_at(harness.replica.ready, 45.0, 65.0)
    harness.at(52.0, lambda: setattr(harness.storage, "published_by_others", 1))
    harness.clock.call_at(START + 60.0, lambda: keep_publishing(harness))
    harness.stop_at(200.0)
    assert harness.run() == 0
    assert seen[0][0] is False
    assert seen[1] == (True, "connected to ZooKeeper")


def test_a_leader_whose_writes_fail_is_not_ready_and_says_why(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(max_write_failures=5)
    h.storage.fail_writes = 2
    # after two failed writes (0 and 10 s), and after the write at 20 s succeeded
    seen = h.seen_at(h.replica.ready, 15.0, 25.0)
    h.stop_at(26.0)
    h.run()
    assert seen[0][0] is False
    assert seen[0][1] == "leader write failed: injected: No space left on device"
    assert seen[1] == (True, "connected to ZooKeeper")


def test_a_standby_gives_up_on_time_between_its_periodic_looks(make_harness) -> None:  # type: ignore[no-untyped-def]
    # looks every 25 s; grace 2 x 1 + 25 = 27 s; failover-timeout 40 s after the start: it wakes for
    # the deadline instead of waiting for the look at 50 s
    h = make_harness(leader_timeout=1.0, attempter_timeout=25.0, failover_timeout=40.0)
    other_leader(h.server, "idle")
    h.stop_at(500.0)
    assert h.run() == 1
    assert h.clock.elapsed == pytest.approx(40.0)


def test_a_leader_that_resigned_does_not_take_its_own_last_file_for_new_progress(make_harness) -> None:  # type: ignore[no-untyped-def]
    # It wrote files 1-3, then every write fails; it resigns, and as a standby behind another
    # replica that publishes nothing it must not count the counter it left (3) as progress.
    h: Harness = make_harness(leader_timeout=1.0, attempter_timeout=1.0, failover_timeout=8.0)
    original = h.storage.write

    def write(record, *, valid_until):  # type: ignore[no-untyped-def]
        if len(h.storage.written) >= 3:
            h.storage.fail_writes = 1
        return original(record, valid_until=valid_until)

    h.storage.write = write  # type: ignore[method-assign]
    h.clock.call_later(0.1, _rival_that_grabs_the_free_node_and_fails(h, holds=30.0))
    h.stop_at(100.0)
    assert h.run() == 1
    # last file at 2 s; failing since then; it gives up 8 s later at its first look past that
    assert h.clock.elapsed <= 2.0 + 8.0 + 1.0


def test_a_counter_that_goes_back_down_is_not_progress(harness: Harness) -> None:
    # A publish that fails at its link stores K+1 and gives it back (K): a standby that sees
    # 5, 6, 5, 6, 5 ... must not take every change for work done.
    other_leader(harness.server, "stuck")
    harness.storage.published_by_others = 5

    def flip() -> None:
        harness.storage.published_by_others = 11 - harness.storage.published_by_others  # 5 <-> 6
        harness.clock.call_later(10.0, flip)

    harness.clock.call_later(5.0, flip)
    harness.stop_at(500.0)
    assert harness.run() == 1  # gave up: the counter never passed 6
    assert harness.clock.elapsed <= 10.0 + 60.0 + 10.0
