"""The switchover request and the history on a real ZooKeeper: one request at a time, every replica
told, a request written before the leader node went known (or at least unsettled) before the
deletion is, and the history's terms and ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from app.adapters.kazoo_coordinator import KazooCoordinator
from app.ports.coordination import SwitchoverBusyError, SwitchoverRequest, TermRecord
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def make(zk_server: ZooKeeperEndpoint, election_path: str) -> Iterator[Callable[[str], KazooCoordinator]]:
    made: list[KazooCoordinator] = []

    def build(identity: str) -> KazooCoordinator:
        coordinator = KazooCoordinator(
            zk_server.address, election_path, session_timeout=max(zk_server.min_session_timeout, 4.0)
        )
        made.append(coordinator)
        coordinator.connect(10.0)
        coordinator.prepare(identity, {"identity": identity})
        return coordinator

    yield build
    for coordinator in made:
        coordinator.close()


def _request(epoch: int, to: str | None = "b", rid: str = "x1") -> SwitchoverRequest:
    return SwitchoverRequest(rid, epoch, "a", to, "2026-12-01T00:00:00Z", 5.0)


def test_one_request_at_a_time_and_every_replica_hears_of_it(make: Callable[[str], KazooCoordinator]) -> None:
    a, b = make("a"), make("b")
    assert b.switchover_request() is None
    a.request_switchover(_request(7))
    with pytest.raises(SwitchoverBusyError):
        a.request_switchover(_request(7, rid="x2"))
    wait_for(lambda: b.switchover_request() == _request(7), 10, "b to hear of the request")
    assert b.switchover_settled()
    b.clear_switchover("not-this-one")
    assert a.switchover_request() is not None
    b.clear_switchover("x1")
    wait_for(lambda: a.switchover_request() is None, 10, "a to hear it was cleared")


def test_a_request_written_before_the_leader_node_went_is_known_before_the_deletion(
    make: Callable[[str], KazooCoordinator],
) -> None:
    leader, candidate, operator = make("a"), make("b"), make("ops")
    node = leader.create_leader({"identity": "a"})
    assert node is not None
    assert candidate.leader(watch=True) is not None  # the head's watch on the leader node
    seen: list[tuple[bool, SwitchoverRequest | None]] = []
    vacancy = threading.Event()

    def on_change() -> None:  # kazoo's thread, in the order of the events
        if not vacancy.is_set() and candidate.take_over_signal():
            seen.append((candidate.switchover_settled(), candidate.switchover_request()))
            vacancy.set()

    candidate.subscribe(on_change)
    for round_ in range(20):
        operator.request_switchover(_request(node.epoch, rid=f"r{round_}"))
        leader.resign(node)  # right after: no waiting for anyone to hear of the request
        assert vacancy.wait(10), "the candidate never heard the leader node go"
        settled, request = seen[-1]
        assert not settled or request is not None, f"round {round_}: the deletion came first"
        operator.clear_switchover(f"r{round_}")
        wait_for(lambda: candidate.switchover_request() is None, 10, "the clear to arrive")
        node = leader.create_leader({"identity": "a"})
        assert node is not None
        assert candidate.leader(watch=True) is not None
        vacancy.clear()


def test_the_history_keeps_terms_and_ends_and_closes_a_silent_one_as_expired(
    make: Callable[[str], KazooCoordinator],
) -> None:
    a, b = make("a"), make("b")
    assert a.begin_term_record(TermRecord(10, "a", "t0")) is None  # the first term ever
    a.end_term_record(10, "graceful", "t1")
    wait_for(lambda: b.history() and b.history()[-1].reason == "graceful", 10, "the end to land")
    previous = b.begin_term_record(TermRecord(20, "b", "t2"))
    assert previous == TermRecord(10, "a", "t0", "t1", "graceful")
    # b vanishes without a word: its successor closes its term as expired
    previous = a.begin_term_record(TermRecord(30, "a", "t3"))
    assert previous == TermRecord(20, "b", "t2", "t3", "expired")
    assert [t.epoch for t in b.history()] == [10, 20, 30]
    assert a.begin_term_record(TermRecord(30, "a", "t3")) is None  # a resumed term: not twice
    for epoch in range(31, 60):
        a.begin_term_record(TermRecord(epoch, "a", "t"))
    assert len(a.history()) == 20
