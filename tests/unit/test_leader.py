"""Leader: cadence on a fixed grid, confirmation before every write, stepping down at once."""

from __future__ import annotations

import logging

import pytest

from app.machine import StateName
from app.ports.coordination import LeaderNode
from app.ports.storage import FencedError, LeaseExpiredError, StorageError
from tests.fakes import _Node
from tests.unit.conftest import Harness, other_leader


def test_first_file_at_once_then_one_per_leader_timeout(harness: Harness) -> None:
    harness.stop_at(35.0)
    assert harness.run() == 0
    assert harness.write_times == [0.0, 10.0, 20.0, 30.0]
    assert [r.sequence for _t, r in harness.storage.written] == [0, 1, 2, 3]


def test_advancing_ten_seconds_writes_exactly_one_more_file(harness: Harness) -> None:
    counts = harness.seen_at(lambda: len(harness.storage.written), 5.0, 15.0, 25.0)
    harness.stop_at(26.0)
    harness.run()
    assert counts == [1, 2, 3]


def test_no_write_just_before_the_tick(harness: Harness) -> None:
    harness.stop_at(9.999)
    harness.run()
    assert harness.write_times == [0.0]


def test_slow_writes_do_not_push_the_schedule(harness: Harness) -> None:
    harness.storage.write_duration = 3.0
    harness.stop_at(45.0)
    harness.run()
    assert harness.write_times == [3.0, 13.0, 23.0, 33.0, 43.0]  # each began on the 10 s grid


def test_a_write_longer_than_the_period_skips_missed_ticks(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(leader_timeout=2.0)  # lease 6 s: a 3.5 s write still publishes within it
    h.storage.write_duration = 3.5
    h.stop_at(13.0)
    h.run()
    # began at 0 (done 3.5), next grid points 4 (done 7.5), 8 (11.5), 12 (15.5, after the stop was
    # asked): the points 2, 6 and 10 were skipped, not bunched
    assert h.write_times == [3.5, 7.5, 11.5, 15.5]


def test_retention_keeps_the_newest_capacity_files(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(storage_capacity=2)
    h.stop_at(45.0)
    h.run()
    assert [name for name, _ in h.storage.files] == [
        "leader-00000000000000000101-000000000003.json",
        "leader-00000000000000000101-000000000004.json",
    ]
    assert len(h.storage.deleted) == 3
    assert h.metric("election_files_deleted_total") == 3
    assert h.metric("election_files_written_total") == 5


def test_file_records_carry_identity_epoch_sequence_and_time(harness: Harness) -> None:
    harness.stop_at(11.0)
    harness.run()
    _t, record = harness.storage.written[1]
    assert record.identity == "me"
    assert record.epoch == 101  # czxid of the node it created: the first transaction after zxid 100
    assert record.sequence == 1
    assert record.written_at == "2026-01-01T00:00:10.000000Z"


def test_confirms_leadership_with_a_read_ahead_of_each_write(harness: Harness) -> None:
    calls: list[tuple[str, float]] = []
    harness.coordinator.on_call = lambda name: calls.append((name, round(harness.clock.elapsed, 6)))
    harness.storage.on_write = lambda: calls.append(("write", round(harness.clock.elapsed, 6)))
    harness.stop_at(25.0)
    harness.run()
    assert harness.write_times == [0.0, 10.0, 20.0]
    reads = [when for name, when in calls if name == "leader"]
    # Attempter's look finds the node free at 0 s and creates it: that create confirms the first
    # write; right after it one read sets our watch; then one read MIN_LEAD (5 ms, the fake's reads
    # take no time) before each slot, so that the write starts at the slot itself. We leave the
    # queue and the term goes into the history after its first file (off the hand-over's path).
    names = [name for name, _ in calls]
    first = names.index("enter_queue")
    assert names[first : first + 8] == [
        "enter_queue", "queue_position", "leader", "create_leader", "write", "leave_queue",
        "begin_term_record", "leader",
    ]  # fmt: skip
    assert reads == [0.0, 0.0, 9.995, 19.995]
    # while leading, ZooKeeper sees reads only (and the history's one write): the one create is
    # the one that made us leader
    assert harness.coordinator.calls.count("create_leader") == 1


def test_the_lead_of_the_confirming_read_follows_the_slowest_recent_read(harness: Harness) -> None:
    reads: list[float] = []

    def slow_read(name: str) -> None:
        if name == "leader" and harness.clock.elapsed > 5.0:
            reads.append(round(harness.clock.elapsed, 6))
            harness.clock.advance(0.04)  # a 40 ms round trip

    harness.coordinator.on_call = slow_read
    harness.stop_at(35.0)
    harness.run()
    # the first slow read is sent 5 ms ahead and comes back 35 ms late; from then on the read goes
    # out twice the slowest recent round trip ahead (80 ms), and the writes are on the grid again
    assert reads == [9.995, 19.92, 29.92]
    assert harness.write_times == [0.0, pytest.approx(10.035), 20.0, 30.0]


def test_a_period_longer_than_the_lease_still_confirms_ahead_of_the_slot(harness: Harness) -> None:
    # period 10 s, lease 6 s; every read takes 40 ms. The read that sets the watch right after the
    # first write would be 10 s old at the next slot: it must not push that write back by a read.
    def slow_read(name: str) -> None:
        if name == "leader":
            harness.clock.advance(0.04)

    harness.coordinator.on_call = slow_read
    harness.stop_at(21.0)
    harness.run()
    # the look took 40 ms, so the grid starts at 0.04 s; every write is on it
    assert harness.write_times == pytest.approx([0.04, 10.04, 20.04])


def test_a_change_between_the_confirming_read_and_the_slot_voids_the_read(harness: Harness) -> None:
    harness.at(9.997, harness.server.delete_leader_by_hand)  # read at 9.995, slot at 10
    harness.stop_at(10.5)
    harness.run()
    epochs = [r.epoch for _t, r in harness.storage.written]
    # no write of the old term after its node was deleted: the watch woke us, the new read saw the
    # node gone, and the new term (a new node, a new epoch) wrote first thing
    assert harness.write_times == [0.0, pytest.approx(9.997)]
    assert epochs[0] < epochs[1]


def test_suspended_connection_stops_leader_work_at_once(harness: Harness) -> None:
    harness.at(15.0, harness.coordinator.suspend)
    harness.stop_at(100.0)
    harness.run()
    assert harness.write_times == [0.0, 10.0]
    assert harness.metric("election_state_transitions_total", **{"from": "Leader", "to": "Failover"}) == 1
    assert harness.metric("election_leadership_lost_total") == 1


def test_a_wake_up_between_slots_is_confirmed_at_once_not_at_the_next_read_ahead(harness: Harness) -> None:
    # One wake-up (anything changed: a watch, the connection, the command) early in a period: the
    # leader must look at once, since a command it runs would otherwise go on under a doubt until
    # the next slot's read-ahead.
    reads: list[float] = []
    harness.coordinator.on_call = lambda name: (
        reads.append(harness.clock.elapsed) if name == "leader" else None
    )
    harness.at(12.0, harness.replica.ctx.wake)
    harness.stop_at(25.0)
    harness.run()
    assert [round(t, 6) for t in reads if t > 1.0] == [9.995, 12.0, 19.995]
    assert harness.write_times == [0.0, 10.0, 20.0]


def test_leader_node_deleted_by_hand_goes_back_to_attempter_and_leads_a_new_term(harness: Harness) -> None:
    harness.at(15.0, harness.server.delete_leader_by_hand)
    harness.stop_at(16.0)
    harness.run()
    epochs = [r.epoch for _t, r in harness.storage.written]
    assert harness.write_times == [0.0, 10.0, 15.0]
    assert epochs[0] == epochs[1] < epochs[2]
    assert [r.sequence for _t, r in harness.storage.written] == [0, 1, 0]
    assert harness.metric("election_state_transitions_total", **{"from": "Leader", "to": "Attempter"}) == 1
    assert harness.metric("election_leadership_acquired_total") == 2


def test_leader_node_taken_by_another_session_steps_down(harness: Harness) -> None:
    def steal() -> None:
        harness.server.delete_leader_by_hand()
        # nobody is woken before the thief creates its node (the watch fired with the deletion)
        other_leader(harness.server, "thief")

    harness.at(12.0, steal)
    harness.stop_at(40.0)
    harness.run()
    assert harness.write_times == [0.0, 10.0]
    assert harness.replica.ctx.observed_leader is not None
    assert harness.replica.ctx.observed_leader.identity == "thief"


def test_unconfirmable_leadership_goes_to_failover_without_writing(harness: Harness) -> None:
    def fail_next_read() -> None:
        harness.coordinator.fail_next.append("leader")

    harness.at(5.0, fail_next_read)
    harness.stop_at(12.0)
    harness.run()
    # the read for the 10 s tick (sent at 9.995) fails: no write then; Failover retries Init after
    # 0.25 s, and Attempter finds the node still ours (same session): same epoch, and that look
    # confirms the resumed term's first write.
    assert harness.write_times == [0.0, pytest.approx(10.245)]
    assert harness.metric("election_state_transitions_total", **{"from": "Leader", "to": "Failover"}) == 1
    assert harness.metric("election_state_transitions_total", **{"from": "Failover", "to": "Init"}) == 1
    assert len({r.epoch for _t, r in harness.storage.written}) == 1
    assert [r.sequence for _t, r in harness.storage.written] == [0, 1]  # numbering resumed, no reuse


def test_no_write_when_confirmation_outlived_the_lease(harness: Harness) -> None:
    # session 9 s -> lease 6 s. A confirming read that takes 7 s must not be followed by a write.
    slow = {"armed": False}

    def on_call(name: str) -> None:
        if name == "leader" and slow["armed"]:
            slow["armed"] = False
            harness.clock.advance(7.0)

    harness.coordinator.on_call = on_call
    harness.at(5.0, lambda: slow.update(armed=True))
    harness.stop_at(30.0)
    harness.run()
    # tick 10: the read sent at 9.995 took until 16.995 -> no write then: confirm again (fast) and
    # write at once.
    assert harness.write_times == [0.0, pytest.approx(16.995), 20.0]


def test_write_failures_are_counted_and_retried_next_tick(harness: Harness) -> None:
    harness.storage.fail_writes = 2
    harness.stop_at(35.0)
    harness.run()
    assert harness.write_times == [20.0, 30.0]
    assert harness.metric("election_write_errors_total", reason="storage") == 2
    assert harness.replica.machine.state is StateName.STOPPING


def test_stop_while_leading_releases_the_node(harness: Harness) -> None:
    harness.stop_at(12.0)
    assert harness.run() == 0
    assert harness.server.leader is None
    assert harness.coordinator.calls[-1] == "close"
    assert harness.metric("election_is_leader") == 0


@pytest.mark.parametrize("period", [0.25, 1.0, 10.0])
def test_cadence_is_exact_for_any_period(make_harness, period: float) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(leader_timeout=period, storage_capacity=1000)
    h.stop_at(period * 100 + period / 2)
    h.run()
    assert len(h.write_times) == 101
    assert h.write_times == pytest.approx([i * period for i in range(101)], abs=1e-9)


@pytest.mark.parametrize("period", [0.1, 0.3, 1.1])
def test_a_slot_whose_instant_rounds_below_it_is_not_stepped_again(make_harness, period: float) -> None:  # type: ignore[no-untyped-def]
    # start + k * period can round so that (slot - start) / period is just short of k: at the
    # slot's own instant (the fake clock wakes exactly on it) the next slot must still be k + 1.
    h = make_harness(leader_timeout=period, storage_capacity=1000)

    def runaway() -> None:
        if len(h.storage.written) > 200:
            raise RuntimeError(f"slot repeated: {len(h.storage.written)} writes by {h.clock.elapsed:.3f}s")

    h.storage.on_write = runaway
    h.stop_at(period * 100 + period / 2)
    h.run()
    assert h.write_times == pytest.approx([i * period for i in range(101)], abs=1e-9)


def test_a_fenced_write_writes_nothing_resigns_and_goes_to_failover(harness: Harness) -> None:
    original = harness.storage.write
    fenced = {"at": 15.0}

    def write(record, **kw):  # type: ignore[no-untyped-def]
        if harness.clock.elapsed >= fenced["at"]:
            raise FencedError(record.epoch, record.epoch + 50)
        return original(record, **kw)

    harness.storage.write = write  # type: ignore[method-assign]
    harness.stop_at(20.5)
    harness.run()
    assert harness.write_times == [0.0, 10.0]
    assert harness.metric("election_fenced_writes_total") >= 1
    assert harness.metric("election_write_errors_total", reason="storage") == 0
    assert harness.metric("election_state_transitions_total", **{"from": "Leader", "to": "Failover"}) >= 1
    assert "resign" in harness.coordinator.calls


def test_a_replica_fenced_again_and_again_gives_up_after_the_failover_timeout(make_harness) -> None:  # type: ignore[no-untyped-def]
    # ZooKeeper's data was wiped: its zxids restarted below the directory's fence, so every term
    # this replica wins is fenced. It must not spin; Failover's bound ends it with status 1.
    h = make_harness(failover_timeout=30.0)

    def write(record, **_kw):  # type: ignore[no-untyped-def]
        raise FencedError(record.epoch, 10**12)

    h.storage.write = write  # type: ignore[method-assign]
    assert h.run() == 1
    assert h.storage.written == []
    assert h.clock.elapsed == pytest.approx(30.0, abs=0.01)


def test_persistent_write_failures_resign_the_node_after_the_threshold(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(max_write_failures=3)
    h.storage.fail_writes = 1000
    h.stop_at(20.1)
    h.run()
    # failures at 0, 10, 20 -> resigned at 20 s: the node is free for a healthier replica
    assert h.metric("election_write_errors_total", reason="storage") == 3
    assert h.metric("election_state_transitions_total", **{"from": "Leader", "to": "Failover"}) == 1
    assert "resign" in h.coordinator.calls
    assert h.server.leader is None or h.server.leader.owner != h.coordinator.session_id()


def test_a_success_resets_the_failure_count(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(max_write_failures=2)
    outcomes = iter([True, False, True, False, True, False, True])
    original = h.storage.write

    def write(record, **kw):  # type: ignore[no-untyped-def]
        if not next(outcomes):
            raise StorageError("flaky disk")
        return original(record, **kw)

    h.storage.write = write  # type: ignore[method-assign]
    h.stop_at(65.0)
    h.run()
    assert "resign" not in h.coordinator.calls
    assert h.metric("election_write_errors_total", reason="storage") == 3


def test_the_lease_counts_the_session_the_server_granted_not_the_one_asked_for(harness: Harness) -> None:
    # Asked for 9 s (a lease of 6 s), granted 3 s (a lease of 2 s). The reply to the read sent at
    # 9.995 (ours) takes 2.5 s to arrive; meanwhile, at 12.0, the server has expired our session and
    # another replica holds the node, and we hear nothing of it (cut off). With the requested
    # timeout the 2.5 s old read would still look valid and we would write at 12.495, while another
    # leads; with the granted one it is too old: confirm again, and step down.
    harness.coordinator.granted = 3.0
    original = harness.coordinator.leader
    slow = {"armed": False}

    def leader(*, watch: bool, fresh: bool = False) -> LeaderNode | None:
        node = original(watch=watch, fresh=fresh)
        if slow["armed"]:
            slow["armed"] = False
            harness.clock.advance(2.5)  # the reply is in flight
        return node

    def taken_silently() -> None:
        harness.server.leader = _Node(owner=0xBEEF, epoch=harness.server.next_zxid(), data={"identity": "r2"})

    harness.coordinator.leader = leader  # type: ignore[method-assign]
    harness.at(5.0, lambda: slow.update(armed=True))
    harness.at(12.0, taken_silently)
    harness.stop_at(14.0)
    harness.run()
    assert harness.write_times == [0.0]
    assert harness.metric("election_state_transitions_total", **{"from": "Leader", "to": "Attempter"}) == 1


def test_every_confirmation_of_a_leader_is_a_fresh_read(harness: Harness) -> None:
    harness.stop_at(35.0)
    harness.run()
    assert harness.write_times == [0.0, 10.0, 20.0, 30.0]
    # The only plain read is Attempter's look that found the node free; every read as leader (the
    # one that sets the watch after the first write, then one ahead of each slot) is fresh.
    assert harness.coordinator.plain_reads == 1
    assert harness.coordinator.fresh_reads == 4


def test_a_leader_that_cannot_learn_the_granted_timeout_resigns_without_writing(harness: Harness) -> None:
    harness.coordinator.grant_unknown = True
    harness.stop_at(5.0)
    harness.run()
    assert harness.storage.written == []
    assert harness.server.leader is None  # resigned: another replica may lead
    assert harness.metric("election_state_transitions_total", **{"from": "Leader", "to": "Failover"}) >= 1


# -- the storage's answers: lease, fsync, retention ------------------------------------------


def test_a_write_that_outlives_its_lease_publishes_nothing_and_is_retried_at_once(harness: Harness) -> None:
    # session 9 s -> lease 6 s. The write for the 10 s slot is confirmed at 9.995 and takes 7 s.
    calls: list[tuple[str, float]] = []
    harness.coordinator.on_call = lambda name: calls.append((name, round(harness.clock.elapsed, 6)))

    def slow_once() -> None:
        harness.storage.write_duration = 7.0 if harness.clock.elapsed == pytest.approx(10.0) else 0.0

    harness.storage.on_write = slow_once
    harness.stop_at(25.0)
    harness.run()
    # nothing published at 17 by the expired write; a fresh read at 17, then the retry at once
    assert harness.write_times == [0.0, pytest.approx(17.0), 20.0]
    assert [r.sequence for _t, r in harness.storage.written] == [0, 1, 2]
    assert ("leader", 17.0) in calls
    assert harness.metric("election_write_errors_total", reason="lease_expired") == 1
    assert "resign" not in harness.coordinator.calls


def test_lease_expired_writes_count_toward_max_write_failures(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(max_write_failures=3)
    h.storage.write_duration = 7.0  # longer than the 6 s lease: never published
    h.stop_at(30.0)
    h.run()
    assert h.storage.written == []
    assert h.metric("election_write_errors_total", reason="lease_expired") >= 3
    assert "resign" in h.coordinator.calls


def test_writes_and_retention_carry_the_confirmation_they_rest_on(harness: Harness) -> None:
    seen: list[tuple[str, float, int | None]] = []
    write, retain = harness.storage.write, harness.storage.retain

    def spy_write(record, *, valid_until):  # type: ignore[no-untyped-def]
        seen.append(("write", valid_until, None))
        return write(record, valid_until=valid_until)

    def spy_retain(capacity, *, epoch, valid_until):  # type: ignore[no-untyped-def]
        seen.append(("retain", valid_until, epoch))
        return retain(capacity, epoch=epoch, valid_until=valid_until)

    harness.storage.write = spy_write  # type: ignore[method-assign]
    harness.storage.retain = spy_retain  # type: ignore[method-assign]
    harness.stop_at(15.0)
    harness.run()
    start = 1000.0  # the fake clock's origin: valid_until is on the monotonic clock
    # first write: the create at 0 s; second: the read at 9.995 s; each + the 6 s lease
    assert seen == [
        ("write", start + 6.0, None),
        ("retain", start + 6.0, 101),
        ("write", pytest.approx(start + 15.995), None),
        ("retain", pytest.approx(start + 15.995), 101),
    ]


def test_a_file_published_without_its_directory_fsync_counts_as_written(harness: Harness) -> None:
    harness.storage.unsynced_writes = 1
    harness.stop_at(25.0)
    harness.run()
    assert harness.write_times == [0.0, 10.0, 20.0]
    assert [r.sequence for _t, r in harness.storage.written] == [0, 1, 2]
    assert harness.metric("election_files_written_total") == 3
    assert harness.metric("election_write_errors_total", reason="directory_fsync") == 1
    assert harness.metric("election_write_errors_total", reason="storage") == 0


def test_retention_refused_by_the_fence_steps_down(harness: Harness) -> None:
    def fenced(capacity, *, epoch, valid_until):  # type: ignore[no-untyped-def]
        raise FencedError(epoch, epoch + 50)

    harness.storage.retain = fenced  # type: ignore[method-assign]
    harness.stop_at(5.0)
    harness.run()
    assert len(harness.storage.written) >= 1
    assert harness.metric("election_fenced_writes_total") >= 1
    assert "resign" in harness.coordinator.calls


def test_retention_past_its_lease_is_counted_and_retried_next_tick(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(storage_capacity=1)
    retain = h.storage.retain
    expired = {"left": 1}

    def retain_once_late(capacity, *, epoch, valid_until):  # type: ignore[no-untyped-def]
        if h.storage.files[1:] and expired["left"]:
            expired["left"] -= 1
            raise LeaseExpiredError("the lease ran out before retention")
        return retain(capacity, epoch=epoch, valid_until=valid_until)

    h.storage.retain = retain_once_late  # type: ignore[method-assign]
    h.stop_at(25.0)
    h.run()
    assert h.metric("election_write_errors_total", reason="lease_expired") == 1
    assert h.write_times == [0.0, 10.0, 20.0]  # not a write failure: the cadence goes on
    assert [name for name, _ in h.storage.files] == ["leader-00000000000000000101-000000000002.json"]
    assert "resign" not in h.coordinator.calls


def test_a_stopping_leader_releases_its_node_before_its_log_lines_and_stopping(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 13: the successor's take-over starts with the session's close; nothing that is not
    # needed for the release (log lines, metrics, the entry into Stopping) comes before it.
    close = harness.coordinator.close
    marker = logging.getLogger("election.test")

    def recorded_close() -> None:
        marker.info("close")
        close()

    harness.coordinator.close = recorded_close  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="election")
    harness.run(until=2.5)
    events = [r.getMessage() for r in caplog.records]
    first_close = events.index("close")
    stopped = next(i for i, e in enumerate(events) if e.startswith("stopped leading epoch"))
    to_stopping = next(i for i, e in enumerate(events) if e.startswith("Leader -> Stopping"))
    assert first_close < stopped < to_stopping, events
