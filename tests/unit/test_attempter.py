"""Attempter: looks (reads) on a jittered period, wakes at once when the leader leaves, never
writes to ZooKeeper while somebody else leads."""

from __future__ import annotations

import itertools

import pytest

from app.machine import StateName
from app.ports.coordination import SwitchoverRequest
from tests.fakes import FakeCoordinator, FakeZooKeeper
from tests.unit.conftest import Harness, keep_publishing, other_leader


def _look_times(h: Harness) -> list[float]:
    looks: list[float] = []
    h.coordinator.on_call = lambda name: looks.append(h.clock.elapsed) if name == "leader" else None
    return looks


def test_looks_at_exactly_the_scheduled_times_without_jitter(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    h = make_harness(server=server)
    looks = _look_times(h)
    h.stop_at(35.0)
    h.run()
    assert looks == [0.0, 10.0, 20.0, 30.0]


def test_jitter_shortens_each_period_by_up_to_a_fifth(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    fractions = itertools.cycle([0.5, 1.0, 0.0])
    h = make_harness(server=server, jitter=lambda: next(fractions))
    looks = _look_times(h)
    h.stop_at(30.0)
    h.run()
    # periods 10 x (1 - 0.2 x u): 9.0, 8.0, 10.0, 9.0
    assert looks == pytest.approx([0.0, 9.0, 17.0, 27.0])


def test_jitter_source_out_of_range_is_clamped_so_progress_is_at_least_every_timeout(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    h = make_harness(server=server, jitter=lambda: -3.0)
    looks = _look_times(h)
    h.stop_at(25.0)
    h.run()
    assert looks == [0.0, 10.0, 20.0]


def test_a_periodic_attempt_costs_zookeeper_no_write_while_another_leads(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    writes_before = server.writes
    h = make_harness(server=server, attempter_timeout=1.0)
    keep_publishing(h)
    h.stop_at(100.0)
    h.run()
    assert "create_leader" not in h.coordinator.calls
    # registering as a member and joining the queue are our only writes (the close at the end is
    # a session close)
    assert server.writes == writes_before + 2
    assert h.coordinator.calls.count("leader") == 100  # at 0, 1, ..., 99 s; the stop at 100 s wins
    # one read per periodic look: the queue is read once, at entry (no wake-up said it moved)
    assert h.coordinator.calls.count("queue_position") == 1


def test_wakes_at_once_when_the_leader_node_is_deleted(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other = other_leader(server)
    h = make_harness(server=server, attempter_timeout=10.0)
    h.at(3.5, other.close)  # graceful stop of the other leader: its session close deletes the node
    h.stop_at(5.0)
    h.run()
    assert h.write_times == [3.5]  # led at the moment of deletion, not at the next 10 s attempt
    assert h.metric("election_leadership_acquired_total") == 1


def test_becomes_leader_on_the_first_attempt_when_the_node_is_free(harness: Harness) -> None:
    harness.stop_at(1.0)
    harness.run()
    assert harness.write_times == [0.0]
    assert harness.metric("election_state_transitions_total", **{"from": "Attempter", "to": "Leader"}) == 1


def test_a_node_already_owned_by_our_session_counts_as_success(harness: Harness) -> None:
    # A retried create: the first create reached the server but its reply was lost, so the node
    # exists and is ours. Simulate by creating it with our own session before Attempter looks.
    harness.coordinator.start()
    created = harness.coordinator.create_leader({"identity": "me"})
    assert created is not None
    harness.stop_at(1.0)
    harness.run()
    assert [r.epoch for _t, r in harness.storage.written] == [created.epoch]
    # The look that found it ours was a plain read, which a follower cut off from the quorum could
    # still answer: the first write waited for a fresh one.
    assert harness.coordinator.fresh_reads == 1


def test_losing_the_create_race_keeps_attempting(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    h = make_harness(server=server)
    racer: list[object] = []

    def race(name: str) -> None:
        # Just before our create lands, another replica's create lands first.
        if name == "create_leader" and not racer:
            racer.append(other_leader(server, "fast"))

    h.coordinator.on_call = race
    h.stop_at(25.0)
    h.run()
    assert h.storage.written == []
    assert h.replica.ctx.observed_leader is not None
    assert h.replica.ctx.observed_leader.identity == "fast"
    assert h.replica.machine.state is StateName.STOPPING


def test_connection_suspended_goes_to_failover(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    h = make_harness(server=server)
    h.at(4.0, h.coordinator.suspend)
    h.stop_at(5.0)
    h.run()
    assert h.metric("election_state_transitions_total", **{"from": "Attempter", "to": "Failover"}) == 1


def test_a_failed_look_goes_to_failover(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    h = make_harness(server=server)
    h.at(4.0, lambda: h.coordinator.fail_next.append("leader"))
    h.stop_at(10.5)
    h.run()
    assert h.metric("election_state_transitions_total", **{"from": "Attempter", "to": "Failover"}) == 1
    assert h.metric("election_state_transitions_total", **{"from": "Failover", "to": "Init"}) == 1


def test_stop_request_while_attempting(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    other_leader(server)
    h = make_harness(server=server)
    h.stop_at(3.0)
    assert h.run() == 0
    assert h.clock.elapsed == 3.0  # woke at once, did not wait for the next attempt
    assert h.metric("election_state_transitions_total", **{"from": "Attempter", "to": "Stopping"}) == 1


def queued_leader(server: FakeZooKeeper, name: str) -> FakeCoordinator:
    """Another replica that joined the queue of candidates, then created the leader node, and is
    still in the queue: one that died before its first write was out, or of a version before issue
    13 (leaders then stayed at the head)."""
    other = FakeCoordinator(server)
    other.start()
    other.enter_queue()
    assert other.create_leader({"identity": name}) is not None
    return other


def standing_leader(server: FakeZooKeeper, name: str) -> FakeCoordinator:
    """Another replica leading as the app does: it joined the queue, created the leader node, and
    left the queue once its first write was out."""
    other = queued_leader(server, name)
    other.leave_queue()
    return other


def waiting_candidate(server: FakeZooKeeper, *, watching: bool = False) -> FakeCoordinator:
    """Another replica in the queue; ``watching``: it read the queue (so it watches the one ahead)."""
    other = FakeCoordinator(server)
    other.start()
    other.enter_queue()
    if watching:
        other.queue_position()
    return other


def test_only_the_head_is_woken_when_the_leader_leaves(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    leader = standing_leader(server, "first")
    h = make_harness(server=server)  # the head: watches the leader node from its first look
    # twenty more replicas join behind us, each watching the one ahead of it
    h.at(0.1, lambda: [waiting_candidate(server, watching=True) for _ in range(20)])
    counters = h.seen_at(lambda: (server.notifications, server.writes), 3.4, 3.6)
    h.at(3.5, leader.close)
    h.stop_at(5.0)
    h.run()
    assert h.write_times == [3.5]
    # per hand-over, the same with 3 replicas or 100: two notifications (ours: the leader node
    # went; once our first write is out, our successor's: we left the queue, it is the head now)
    # and two writes (our create, our leaving the queue; the fake does not count the old leader's
    # session close)
    (notifications_before, writes_before), after = counters
    assert after == (notifications_before + 2, writes_before + 2)


def test_taking_over_is_one_create_with_no_read_before_the_first_write(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    leader = standing_leader(server, "first")
    h = make_harness(server=server)
    calls: list[str] = []
    h.coordinator.on_call = lambda name: calls.append(name) if h.clock.elapsed >= 3.5 else None
    h.storage.on_write = lambda: calls.append("write")
    h.at(3.5, leader.close)
    h.stop_at(5.0)
    h.run()
    # the create's reply says our session holds the node: that is the first write's confirmation;
    # then we leave the queue (one delete), after the write
    assert calls[: calls.index("write") + 2] == ["create_leader", "write", "leave_queue"]


def test_a_head_whose_place_moved_up_unseen_reads_the_queue_at_the_election_not_the_hand_over(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    # A rolling restart's queue: the leader, then two standbys; we are the second of them and
    # read the queue when we joined (two ahead). The first standby takes over and leaves the queue
    # after its first write: that wakes us (we watched it), and our read of the queue happens
    # then, at its election. Its own departure later costs us one create, no read.
    server = FakeZooKeeper()
    first = queued_leader(server, "first")  # still in the queue: we stand two behind it
    second = waiting_candidate(server, watching=True)
    h = make_harness(server=server)  # third: watches the second
    calls: list[str] = []
    h.coordinator.on_call = lambda name: calls.append(name) if h.clock.elapsed >= 3.5 else None
    h.storage.on_write = lambda: calls.append("write")
    reads_at = h.seen_at(lambda: h.coordinator.calls.count("queue_position"), 1.9, 2.1)

    def second_takes_over() -> None:
        first.close()
        assert second.queue_position() == 0
        assert second.create_leader({"identity": "second"}) is not None
        second.leave_queue()  # its first write is out

    h.at(2.0, second_takes_over)
    h.at(3.5, second.close)
    h.stop_at(5.0)
    h.run()
    assert h.write_times == [3.5]
    assert reads_at == [1, 2]  # at entry, and at the second's election
    assert calls[: calls.index("write") + 1] == ["create_leader", "write"]


def test_a_failed_take_over_costs_one_create_then_looks(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    leader = standing_leader(server, "first")
    h = make_harness(server=server)  # the head
    writes = h.seen_at(lambda: server.writes, 3.4, 3.6)

    def quicker() -> None:
        leader.close()
        other_leader(server, "outsider")  # takes the node first (a hand, an older version)

    h.at(3.5, quicker)
    h.stop_at(5.0)
    h.run()
    assert h.storage.written == []
    assert writes[1] == writes[0] + 2  # the outsider's create, and our failed one
    assert h.replica.ctx.observed_leader is not None
    assert h.replica.ctx.observed_leader.identity == "outsider"
    # the failed create is followed by a look at the node (with a watch: we are the head), not at
    # the queue
    calls = h.coordinator.calls
    assert calls.count("queue_position") == 1  # at entry only
    assert calls[-3:-1] == ["create_leader", "leader"]  # ... before the close at the stop


def test_when_the_head_ahead_of_us_leaves_we_look_and_create_no_node_that_is_held(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    # The head ahead of us goes away (a standby's restart): we are the head now. The node is held
    # (by an outsider): one look, with the watch, and no create.
    server = FakeZooKeeper()
    other_leader(server, "outsider")
    head = waiting_candidate(server)
    h = make_harness(server=server)  # second in the queue
    writes = h.seen_at(lambda: server.writes, 3.4, 3.6)
    h.at(3.5, head.close)
    h.stop_at(5.0)
    h.run()
    assert writes[1] == writes[0]  # no create
    calls = h.coordinator.calls
    assert calls.count("queue_position") == 1  # second: the head's leaving made us first without a read
    assert calls[-2:] == ["leader", "close"]


def test_a_leader_that_left_without_leaving_the_queue_costs_its_successor_one_look(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    # A leader still at the head of the queue (died before its first write was out, or an older
    # version): its departure deletes its candidate too, which wakes us, the one behind: one look
    # (the node is free), then the create.
    server = FakeZooKeeper()
    leader = queued_leader(server, "first")
    h = make_harness(server=server)
    calls: list[str] = []
    h.coordinator.on_call = lambda name: calls.append(name) if h.clock.elapsed >= 3.5 else None
    h.storage.on_write = lambda: calls.append("write")
    h.at(3.5, leader.close)
    h.stop_at(5.0)
    h.run()
    assert h.write_times == [3.5]
    assert calls[: calls.index("write") + 1] == ["leader", "create_leader", "write"]


def test_a_candidate_further_back_is_not_woken_by_the_leader_leaving(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    leader = queued_leader(server, "first")
    waiting_candidate(server)  # second in the queue: a replica that will not act in this test
    h = make_harness(server=server)  # third
    looks = _look_times(h)
    h.at(3.5, leader.close)
    h.stop_at(12.0)
    h.run()
    assert 3.5 not in looks  # nobody watched on our behalf: no wake-up, no read at the hand-over
    # ...but progress is never later than attempter-timeout + the head's grace: the periodic look
    # at 10 s finds the node free, gives the (stuck) head 1 s, looks again and creates it.
    assert looks[:3] == [0.0, 10.0, 11.0]  # (then Leader's first confirming read, at once)
    assert h.write_times == [11.0]


def test_the_queue_moving_without_making_us_head_costs_one_read_and_no_look_at_the_leader(
    make_harness,
) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper()
    queued_leader(server, "first")
    second = waiting_candidate(server)
    h = make_harness(server=server)  # third: watches the second
    h.at(4.0, second.close)  # the second leaves; we are now behind the leader's candidate
    h.stop_at(6.0)
    h.run()
    calls = h.coordinator.calls
    assert calls.count("queue_position") == 2  # at entry, and when the second left
    assert calls.count("leader") == 1  # the look at entry only
    assert h.storage.written == []


def test_a_resigning_leader_rejoins_the_queue_at_its_tail(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(max_write_failures=1)
    h.storage.fail_writes = 1
    h.stop_at(0.3)
    h.run()
    assert "leave_queue" in h.coordinator.calls
    assert h.coordinator.calls.count("enter_queue") == 2  # joined again after Failover -> Init


# -- the head's grace, and leaders elected out of turn (issue 13) ----------------------------------


def test_a_replica_behind_the_head_gives_it_a_grace_before_creating_a_free_node(make_harness) -> None:  # type: ignore[no-untyped-def]
    # A fleet's start: every replica's first look finds the node free. The head takes it (here
    # 0.2 s later); we, second, do not create at first sight: we look again a grace later.
    server = FakeZooKeeper()
    head = waiting_candidate(server)
    h = make_harness(server=server)
    looks = _look_times(h)
    h.at(0.2, lambda: head.create_leader({"identity": "head"}))
    h.stop_at(5.0)
    h.run()
    assert "create_leader" not in h.coordinator.calls  # no failed create, no out-of-turn leader
    assert looks == [0.0, 1.0]  # the look at entry, and the one at the end of the grace
    assert h.replica.ctx.observed_leader is not None
    assert h.replica.ctx.observed_leader.identity == "head"


def test_a_stuck_head_loses_the_free_node_after_one_period_and_the_grace(make_harness) -> None:  # type: ignore[no-untyped-def]
    # The bound: the node goes at 3.5 s; the head (session alive, loop stuck) never takes it. Our
    # periodic look at 3.6 s (every 0.6 s) finds it free, the grace (min(1 s, 0.6 s / 2) = 0.3 s)
    # passes, the second look finds it free still: we create it at 3.9 s, within
    # attempter-timeout + grace of its going.
    server = FakeZooKeeper()
    waiting_candidate(server)  # the head, stuck: it never looks
    other = other_leader(server, "outsider")  # holds the node without queueing
    h = make_harness(server=server, attempter_timeout=0.6)  # second: watches the head's candidate
    looks = _look_times(h)
    h.at(3.5, other.close)  # wakes nobody in the queue: the stuck head set no watch
    h.stop_at(6.0)
    h.run()
    assert h.write_times == pytest.approx([3.9])
    assert looks[5:8] == pytest.approx([3.0, 3.6, 3.9])  # the periodic look, then the grace's


def test_a_node_the_head_takes_within_the_grace_is_left_to_it(make_harness) -> None:  # type: ignore[no-untyped-def]
    # A periodic look (10 s) falls in a hand-over's gap: the node is free, the head takes it a
    # moment later; the grace look (11 s) finds it held and creates nothing.
    server = FakeZooKeeper()
    head = waiting_candidate(server)
    other = other_leader(server, "outsider")
    h = make_harness(server=server)
    looks = _look_times(h)
    h.at(5.0, other.close)
    h.at(10.002, lambda: head.create_leader({"identity": "head"}))
    h.stop_at(25.0)
    h.run()
    assert "create_leader" not in h.coordinator.calls
    assert looks == pytest.approx([0.0, 10.0, 11.0, 20.0])  # one grace look, no grace left pending
    assert h.replica.ctx.observed_leader is not None
    assert h.replica.ctx.observed_leader.identity == "head"


def test_a_leader_elected_out_of_turn_leaves_the_queue_after_its_first_write(make_harness) -> None:  # type: ignore[no-untyped-def]
    # A stuck head ahead of us, a replica behind us. We win the free node after the grace (out of
    # turn); once our first file is out we leave the queue: the one behind us is woken then, once,
    # and our departure later wakes nobody in the queue (only the head, if it watches the node).
    server = FakeZooKeeper()
    head = waiting_candidate(server)  # stuck: never looks
    h = make_harness(server=server)
    behind: list[FakeCoordinator] = []

    def join_behind() -> None:
        successor = waiting_candidate(server)
        assert successor.queue_position() == 2  # watches our candidate
        behind.append(successor)

    h.at(0.5, join_behind)
    calls: list[str] = []
    h.coordinator.on_call = calls.append
    h.storage.on_write = lambda: calls.append("write")
    # (a lambda: the one behind joins at 0.5 s, after this line)
    woken_at_election = h.seen_at(lambda: behind[0].queue_moved(), 1.1)  # noqa: PLW0108
    h.stop_at(5.0)
    h.run()
    assert h.write_times[0] == 1.0  # after the grace
    first_write = calls.index("write")
    assert calls[first_write - 1] == "create_leader"  # nothing between the create and the write
    assert "leave_queue" in calls[first_write:]
    assert sorted(server.candidates.values()) == [head.session_id(), behind[0].session_id()]
    assert woken_at_election == [True]
    assert not behind[0].queue_moved()  # our departure (the stop at 5 s) did not wake it
    assert behind[0].queue_position() == 1  # and it now stands right behind the head


def test_an_in_turn_leader_leaves_the_queue_after_its_first_write_with_one_delete(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    calls: list[str] = []
    h.coordinator.on_call = calls.append
    h.storage.on_write = lambda: calls.append("write")
    h.stop_at(25.0)
    h.run()
    assert h.write_times == [0.0, 10.0, 20.0]
    first_write = calls.index("write")
    assert calls[first_write + 1] == "leave_queue"
    assert calls.count("leave_queue") == 1  # once per term
    assert calls.count("queue_position") == 1  # the look at entry: no read to leave
    assert h.server.candidates == {}


def test_the_queue_moving_while_we_are_a_switchovers_target_is_not_lost(make_harness) -> None:  # type: ignore[no-untyped-def]
    # We stand right behind the head, and a switchover names us. While it does, the head goes
    # (a restart): the queue moved, and we are the head now. The request is then withdrawn
    # (its --wait ran out). The leader's later departure must wake us as the head and cost one
    # create at once, not wait for a periodic look and the grace (a lost wake-up: before the fix
    # the deletion of the one ahead was read and dropped on the target's path, our place stayed
    # 1, and the write came at 11 s).
    server = FakeZooKeeper()
    leader = standing_leader(server, "first")
    head = waiting_candidate(server, watching=True)
    h = make_harness(server=server)  # behind the head: watches its candidate
    epoch = server.leader.epoch  # type: ignore[union-attr]
    request = SwitchoverRequest("r1", epoch, "first", "me", "2026-01-01T00:00:00Z", 30.0)
    h.at(1.0, lambda: server.set_switchover(request))
    h.at(1.5, head.close)
    h.at(2.0, lambda: server.set_switchover(None))
    h.at(3.5, leader.close)
    h.stop_at(12.0)
    h.run()
    assert h.write_times[:1] == [3.5]


def test_a_target_that_never_read_its_place_does_not_take_it_for_the_heads(make_harness) -> None:  # type: ignore[no-untyped-def]
    # A switchover names us as we join (behind a head), and is withdrawn before we ever read the
    # queue. Our place is unknown, not the head's: when the leader goes, the head (stuck here) gets
    # its grace and we create after it, not at once out of turn (before the fix the target's path
    # returned place 0, and we created at 3.5 s, racing the real head).
    server = FakeZooKeeper()
    leader = standing_leader(server, "first")
    waiting_candidate(server, watching=True)  # the head: stuck, never looks
    epoch = server.leader.epoch  # type: ignore[union-attr]
    server.set_switchover(SwitchoverRequest("r1", epoch, "first", "me", "2026-01-01T00:00:00Z", 30.0))
    h = make_harness(server=server)
    h.at(1.0, lambda: server.set_switchover(None))
    h.at(3.5, leader.close)
    h.stop_at(12.0)
    h.run()
    assert h.write_times[:1] == [11.0]  # the period's look at 10 s, then the grace
