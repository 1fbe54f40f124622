"""Switchover, no-lead and the history as the states handle them, on virtual time."""

from __future__ import annotations

from app.machine import StateName
from app.ports.coordination import SwitchoverRequest, TermRecord
from tests.fakes import FakeCoordinator
from tests.unit.conftest import Harness, other_leader


def _request(epoch: int, to: str | None, expires_in: float = 5.0, rid: str = "r1") -> SwitchoverRequest:
    return SwitchoverRequest(rid, epoch, "someone", to, "2026-01-01T00:00:00Z", expires_in)


def _record_entries(h: Harness) -> list[tuple[float, str]]:
    entries: list[tuple[float, str]] = []
    machine = h.replica.machine
    enter = machine._enter

    def spy(to: StateName, previous: StateName | None, reason: str) -> None:
        entries.append((round(h.clock.elapsed, 6), str(to)))
        enter(to, previous, reason)

    machine._enter = spy  # type: ignore[method-assign]
    return entries


def test_the_leader_hands_over_on_a_request_for_its_epoch_and_defers_to_the_target(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness()
    entries = _record_entries(h)
    h.at(15.0, lambda: h.server.set_switchover(_request(101, to="r2")))
    h.stop_at(30.0)
    h.run()
    leads = [t for t, to in entries if to == "Leader"]
    # led at 0, handed over at 15 (the target never came), led again once the request expired
    assert leads == [0.0, 20.0]
    assert h.write_times == [0.0, 10.0, 20.0]  # nothing written between the hand-over and the expiry
    assert h.server.history[0].reason == "switchover"
    assert "leave_queue" in h.coordinator.calls


def test_a_request_for_another_epoch_does_nothing_but_is_cleared(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    h.at(5.0, lambda: h.server.set_switchover(_request(99, to="r2")))
    h.stop_at(25.0)
    h.run()
    assert h.write_times == [0.0, 10.0, 20.0]  # never stopped
    assert h.server.switchover is None  # the live leader cleared the stale request


def test_a_standby_defers_to_the_named_target_until_the_request_expires(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness()
    other = other_leader(h.server)
    entries = _record_entries(h)
    h.at(3.0, lambda: h.server.set_switchover(_request(h.server.leader.epoch, to="r2")))  # type: ignore[union-attr]
    h.at(3.5, other.close)
    h.stop_at(20.0)
    h.run()
    leads = [t for t, to in entries if to == "Leader"]
    assert leads == [8.0]  # not at 3.5: the node was r2's to take; at the expiry (3 + 5 s)


def test_the_named_target_takes_over_the_moment_the_old_leader_lets_go(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness(identity="r2")
    other = other_leader(h.server)
    third = FakeCoordinator(h.server)  # another candidate, ahead of us in the queue
    third.start()
    third.enter_queue()
    entries = _record_entries(h)
    h.at(3.0, lambda: h.server.set_switchover(_request(h.server.leader.epoch, to="r2")))  # type: ignore[union-attr]
    h.at(3.5, other.close)
    h.stop_at(10.0)
    h.run()
    assert [t for t, to in entries if to == "Leader"] == [3.5]
    assert h.server.switchover is None  # cleared by the new leader after its first file


def test_no_create_while_a_change_of_the_request_is_being_read(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    other = other_leader(h.server)
    entries = _record_entries(h)

    def unsettle() -> None:
        h.coordinator.settled = False

    def settle() -> None:
        h.coordinator.settled = True
        h.server.set_switchover(None)  # the re-read came back: nothing pending

    h.at(3.0, unsettle)
    h.at(3.5, other.close)
    h.at(4.0, settle)
    h.stop_at(6.0)
    h.run()
    assert [t for t, to in entries if to == "Leader"] == [4.0]


def test_a_no_lead_replica_never_leads_even_with_the_node_free(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(no_lead=True)
    registered: list[bool] = []
    h.at(50.0, lambda: registered.extend(m["no_lead"] for m in h.server.members.values()))
    h.stop_at(100.0)
    assert h.run() == 0
    assert h.server.leader is None
    assert h.storage.written == []
    assert h.server.candidates == {}  # never queued
    assert registered == [True]


def test_the_history_records_each_term_and_the_new_leader_counts_the_previous_end(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness()
    h.server.history.append(TermRecord(50, "old", "then"))  # a term whose leader vanished
    h.stop_at(15.0)
    h.run()
    old, ours = h.server.history
    assert (old.epoch, old.reason) == (50, "expired")
    assert (ours.epoch, ours.identity, ours.reason) == (101, "me", "graceful")
    assert h.metric("election_leadership_changes_total", reason="expired") == 1


def test_tenure_counts_the_current_term_on_the_leader_only(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    seen = h.seen_at(lambda: h.metric("election_leader_tenure_seconds"), 12.5, 12.6)
    h.at(12.5, h.coordinator.suspend)
    h.run(until=13.0)
    assert seen == [12.5, 0.0]


def test_a_request_older_than_a_term_we_saw_binds_nobody(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    other = other_leader(h.server)
    entries = _record_entries(h)
    # a request for an epoch before the leader's, left behind (its leader died before clearing it)
    h.at(3.0, lambda: h.server.set_switchover(_request(h.server.leader.epoch - 1, to="r2")))  # type: ignore[union-attr]
    h.at(3.5, other.close)
    h.stop_at(6.0)
    h.run()
    assert [t for t, to in entries if to == "Leader"] == [3.5]


def test_a_term_that_never_wrote_is_still_in_the_history_with_its_end(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    # Its leader's storage fails from the first step (the case resigning exists for): recorded only
    # after a first good step, the term was missing, and its successor counted the reason of the
    # term before it (review/s5_history.py).
    h = make_harness()
    h.server.history.append(TermRecord(50, "old", "then", "later", "switchover"))
    h.storage.fail_writes = 1000
    h.stop_at(60.0)
    h.run()
    old, ours = h.server.history[:2]
    assert (old.epoch, old.reason) == (50, "switchover")
    assert (ours.epoch, ours.identity, ours.reason) == (101, "me", "resigned")
    assert ours.ended is not None
    assert h.metric("election_leadership_changes_total", reason="resigned") == 2  # 101 and 103 ended so


def test_a_target_that_led_out_of_turn_leaves_the_queue_after_its_first_file(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness(identity="r2")
    other = other_leader(h.server)
    ahead = FakeCoordinator(h.server)  # the queue's head: the target jumps it
    ahead.start()
    ahead.enter_queue()
    calls: list[str] = []
    h.coordinator.on_call = calls.append
    h.storage.on_write = lambda: calls.append("write")
    h.at(3.0, lambda: h.server.set_switchover(_request(h.server.leader.epoch, to="r2")))  # type: ignore[union-attr]
    h.at(3.5, other.close)
    h.stop_at(10.0)
    h.run()
    assert h.write_times[0] == 3.5
    first_write = calls.index("write")
    assert calls[first_write - 1] == "create_leader"  # no read of the queue before the first file
    assert "leave_queue" in calls[first_write:]
    assert list(h.server.candidates.values()) == [ahead.session_id()]  # ours went; the head stays


def test_a_target_at_the_head_leaves_the_queue_too(make_harness) -> None:  # type: ignore[no-untyped-def]
    # Every leader leaves the queue once its first file is out, in turn or not (app.states.leader).
    h = make_harness(identity="r2")
    other = other_leader(h.server)
    h.at(3.0, lambda: h.server.set_switchover(_request(h.server.leader.epoch, to="r2")))  # type: ignore[union-attr]
    h.at(3.5, other.close)
    held = h.seen_at(lambda: list(h.server.candidates.values()), 9.0)
    h.stop_at(10.0)
    h.run()
    assert h.write_times[0] == 3.5
    assert held == [[]]
    assert h.coordinator.calls.count("leave_queue") == 1


def test_the_head_watches_an_out_of_turn_leaders_node_and_alone_takes_over_when_it_goes(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    # We are the head; a switchover names r2, further back. r2 takes the node while our look after
    # the old leader's deletion found it free (so that look set no watch). r2's clear of the
    # request wakes every replica, and we, the head, look at every wake-up: so we watch r2's node,
    # and its departure wakes us at once (not our next periodic look at 10 s).
    h = make_harness()
    old = other_leader(h.server)
    target = FakeCoordinator(h.server)
    target.start()
    entries = _record_entries(h)

    def target_joins() -> None:
        target.enter_queue()  # behind us

    def target_takes_over() -> None:
        assert target.create_leader({"identity": "r2"}) is not None

    h.at(0.5, target_joins)
    h.at(3.0, lambda: h.server.set_switchover(_request(h.server.leader.epoch, to="r2")))  # type: ignore[union-attr]
    h.at(3.5, old.close)  # wakes us (we watch its node): the node is r2's to take, and free yet
    h.at(3.6, target_takes_over)  # tells nobody: nobody watches a free node
    h.at(4.0, lambda: h.server.set_switchover(None))  # r2's clear, after its first file
    h.at(6.0, target.close)
    h.stop_at(8.0)
    h.run()
    assert [t for t, to in entries if to == "Leader"] == [6.0]
