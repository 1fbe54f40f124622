"""Init checks resources within a bound; Failover heals (or gives up loudly) and never leads."""

from __future__ import annotations

import pytest

from app.machine import StateName
from app.ports.coordination import ConnectionState
from app.states.failover import Failover
from tests.fakes import FakeZooKeeper
from tests.unit.conftest import Harness


def transitions(h: Harness, frm: str, to: str) -> float:
    return h.metric("election_state_transitions_total", **{"from": frm, "to": to}) or 0.0


def outage(h: Harness, start: float, end: float, *, expire: bool = False) -> None:
    """The connection is suspended at ``start`` and back at ``end``: in the same session, or after it
    expired (``expire``)."""
    h.at(start, h.coordinator.suspend)
    h.at(end, h.coordinator.expire_and_reconnect if expire else h.coordinator.reconnect)


def test_init_prepares_zookeeper_and_storage_then_attempts(harness: Harness) -> None:
    harness.run(until=0.5)
    assert harness.coordinator.calls[:2] == ["start", "prepare"]
    assert harness.storage.prepared == 1
    assert transitions(harness, "Init", "Attempter") == 1


def test_unreachable_zookeeper_goes_to_failover_after_exactly_the_connect_timeout(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(server=FakeZooKeeper(up=False), zk_connect_timeout=5.0)
    entered: list[float] = []
    h.replica.metrics.state_entered = (  # type: ignore[method-assign]
        lambda state, previous, since, orig=h.replica.metrics.state_entered: (
            entered.append(h.clock.elapsed) if state == "Failover" else None,
            orig(state, previous, since),
        )
    )
    h.run(until=6.0)
    assert entered == [5.0]


def test_zookeeper_coming_back_heals_through_init(make_harness) -> None:  # type: ignore[no-untyped-def]
    server = FakeZooKeeper(up=False)
    h = make_harness(server=server, zk_connect_timeout=5.0)

    def server_up() -> None:
        server.up = True
        h.coordinator.connect_when_up()

    h.at(12.0, server_up)
    h.run(until=12.5)
    assert transitions(h, "Init", "Failover") == 1
    assert transitions(h, "Failover", "Init") == 1
    assert h.write_times == [12.0]  # led the moment the connection came back
    assert h.coordinator.starts == 1  # the client kept reconnecting by itself; no restart needed


def test_unusable_file_dir_goes_to_failover_and_retries_with_backoff(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    h.storage.fail_prepare = "Read-only file system"
    inits: list[float] = []
    original = h.storage.prepare

    def prepare() -> int:
        inits.append(h.clock.elapsed)
        return original()

    h.storage.prepare = prepare  # type: ignore[method-assign]
    h.at(3.0, lambda: setattr(h.storage, "fail_prepare", None))
    h.run(until=5.0)
    # backoff 0.25, 0.5, 1, 2 (capped at 4) between Init attempts
    assert inits == pytest.approx([0.0, 0.25, 0.75, 1.75, 3.75])
    assert h.write_times == [3.75]


def test_failover_gives_up_after_the_failover_timeout_with_exit_status_1(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(server=FakeZooKeeper(up=False), zk_connect_timeout=5.0, failover_timeout=30.0)
    assert h.run() == 1
    assert transitions(h, "Failover", "Stopping") == 1


def test_failover_timeout_counts_from_the_first_failure(make_harness) -> None:  # type: ignore[no-untyped-def]
    # Failover is entered at 5 s (connect timeout); with a 30 s bound it gives up at 35 s.
    h = make_harness(server=FakeZooKeeper(up=False), zk_connect_timeout=5.0, failover_timeout=30.0)
    h.run()
    assert h.clock.elapsed == 35.0


def test_failover_never_leads_directly(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    outage(h, 15.0, 16.0)
    h.run(until=16.5)
    assert transitions(h, "Leader", "Failover") == 1
    assert transitions(h, "Failover", "Init") == 1
    assert transitions(h, "Failover", "Leader") == 0
    assert transitions(h, "Attempter", "Leader") == 2


def test_reconnect_within_the_session_keeps_the_node_and_epoch(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    outage(h, 15.0, 16.0)
    h.run(until=21.0)
    assert h.write_times == [0.0, 10.0, 16.0]  # paused while unsure (15-16), then resumed
    assert len({r.epoch for _t, r in h.storage.written}) == 1
    assert [r.sequence for _t, r in h.storage.written] == [0, 1, 2]


def test_session_expiry_means_a_new_term_with_a_new_epoch(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness()
    outage(h, 15.0, 30.0, expire=True)
    h.run(until=31.0)
    assert h.write_times == [0.0, 10.0, 30.0]
    first, second = h.storage.written[1][1], h.storage.written[2][1]
    assert second.epoch > first.epoch
    assert second.sequence == 0


def test_failing_streak_resets_once_attempter_is_reached(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(failover_timeout=10.0)
    # Two separate outages of 6 s each: each alone is within the 10 s bound.
    outage(h, 5.0, 11.0)
    outage(h, 20.0, 26.0)
    assert h.run(until=27.0) == 0


@pytest.mark.parametrize(
    ("streak", "expected"), [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 4.0), (50, 4.0)]
)
def test_backoff_doubles_and_is_capped(streak: int, expected: float) -> None:
    assert Failover.backoff(streak, 4.0) == expected


def test_stop_from_failover(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(server=FakeZooKeeper(up=False), zk_connect_timeout=1.0)
    assert h.run(until=3.0) == 0
    assert transitions(h, "Failover", "Stopping") == 1


def test_stop_from_init_while_connecting(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(server=FakeZooKeeper(up=False), zk_connect_timeout=10.0)
    assert h.run(until=2.0) == 0
    assert h.clock.elapsed == 2.0
    assert transitions(h, "Init", "Stopping") == 1
    assert h.coordinator.state() is ConnectionState.CLOSED


def test_stopping_is_terminal_and_closes_the_session(harness: Harness) -> None:
    harness.run(until=1.0)
    assert harness.replica.machine.state is StateName.STOPPING
    assert harness.coordinator.calls[-1] == "close"
    assert harness.metric("election_state", state="Stopping") == 1
    assert harness.metric("election_state", state="Leader") == 0
