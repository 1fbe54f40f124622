"""``election switchover``'s logic (app.switchover) on the fake coordinator, in virtual time.

Each test scripts the cluster: replicas are FakeCoordinators on one FakeZooKeeper, and the leader's
reaction to a request is a callback the test schedules on the FakeClock (the real reaction, in the
states, is the core's and is tested there).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from app import switchover as planned
from app.ports.coordination import CoordinationError, LeaderNode, SwitchoverRequest
from tests.fakes import FakeClock, FakeCoordinator, FakeZooKeeper, SwitchoverToolCoordinator

WAIT = 30.0


class Cluster:
    """Replicas by identity on one fake server; ``r1`` leads from the start."""

    def __init__(self, *names: str, no_lead: tuple[str, ...] = ()) -> None:
        self.clock = FakeClock()
        self.server = FakeZooKeeper()
        self.replicas: dict[str, FakeCoordinator] = {}
        for name in names:
            replica = FakeCoordinator(self.server)
            replica.start()
            replica.prepare(name, {"identity": name, "no_lead": name in no_lead})
            self.replicas[name] = replica
        self.first = self.lead(names[0])
        self.requests: list[SwitchoverRequest] = []
        self.tool = SwitchoverToolCoordinator(self.server)  # the command's own session
        self.tool.on_request = self.requests.append
        self.tool.start()

    def lead(self, name: str) -> LeaderNode:
        node = self.replicas[name].create_leader({"identity": name, "acquired_at": "2026-01-01T00:00:00Z"})
        assert node is not None
        return node

    def hand_over(self, to: str, after: float) -> None:
        """When a request arrives, the leader resigns ``after`` seconds later and ``to`` takes over."""

        def react(request: SwitchoverRequest) -> None:
            self.requests.append(request)

            def act() -> None:
                self.server.delete_leader_by_hand()
                self.lead(to)
                self.server.set_switchover(None)  # the new leader clears the request after its first step

            self.clock.call_later(after, act)

        self.tool.on_request = react

    def run(self, to: str | None, wait: float = WAIT) -> planned.SwitchoverResult:
        return planned.switchover(self.tool, self.clock, to=to, wait=wait, new_id=lambda: "req-1")


def test_the_named_target_taking_over_is_reported_with_both_terms_and_the_time_it_took() -> None:
    cluster = Cluster("r1", "r2", "r3")
    cluster.hand_over("r2", after=0.25)
    result = cluster.run("r2")
    assert result.outcome == planned.SWITCHED and result.ok
    new_epoch = cluster.server.leader.epoch if cluster.server.leader else -1
    assert result.to_text() == f"r1 (epoch {cluster.first.epoch}) -> r2 (epoch {new_epoch}) in 250 ms"
    assert json.loads(result.to_json()) == {
        "ok": True,
        "outcome": "switched",
        "message": result.message,
        "target": "r2",
        "from": {"identity": "r1", "epoch": cluster.first.epoch},
        "to": {"identity": "r2", "epoch": new_epoch},
        "elapsed_ms": 250,
        "request_id": "req-1",
    }


def test_the_request_names_the_leaders_epoch_and_target_and_expires_with_the_wait() -> None:
    cluster = Cluster("r1", "r2")
    cluster.hand_over("r2", after=0.1)
    cluster.run("r2", wait=8.0)
    [request] = cluster.requests
    assert (request.id, request.from_epoch, request.from_identity, request.to) == (
        "req-1",
        cluster.first.epoch,
        "r1",
        "r2",
    )
    assert request.expires_in == 8.0
    assert request.requested_at == "2026-01-01T00:00:00.000000Z"  # the fake wall clock, in UTC


def test_candidates_defer_to_the_target_ten_seconds_at_most() -> None:
    cluster = Cluster("r1", "r2")
    cluster.hand_over("r2", after=0.1)
    cluster.run("r2", wait=60.0)
    assert cluster.requests[0].expires_in == 10.0


def test_without_a_target_whoever_leads_next_is_success() -> None:
    cluster = Cluster("r1", "r2", "r3")
    cluster.hand_over("r3", after=0.1)
    result = cluster.run(None)
    assert result.ok
    assert cluster.requests[0].to is None
    assert result.after is not None and result.after["identity"] == "r3"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("r9", "no connected member is named 'r9' (connected: r1, r2, r3)"),
        ("r1", "r1 already leads (epoch"),
        ("r3", "r3 runs with --no-lead: it never leads"),
    ],
)
def test_a_target_that_could_never_take_over_is_refused_before_anything_is_written(
    target: str, says: str
) -> None:
    cluster = Cluster("r1", "r2", "r3", no_lead=("r3",))
    writes = cluster.server.writes
    result = cluster.run(target)
    assert result.outcome == planned.REFUSED
    assert says in result.message
    assert cluster.server.writes == writes and cluster.requests == []


def test_nobody_leading_is_a_failure_with_nothing_written() -> None:
    cluster = Cluster("r1", "r2")
    cluster.server.delete_leader_by_hand()
    writes = cluster.server.writes
    result = cluster.run("r2")
    assert result.outcome == planned.NO_LEADER
    assert result.message == "nobody leads: there is no leader to hand over"
    assert cluster.server.writes == writes


def test_a_pending_request_makes_the_command_busy_and_is_left_alone() -> None:
    cluster = Cluster("r1", "r2")
    pending = SwitchoverRequest("other", cluster.first.epoch, "r1", None, "2026-01-01T00:00:00Z", 30.0)
    cluster.server.set_switchover(pending)
    result = cluster.run("r2")
    assert result.outcome == planned.BUSY
    assert cluster.server.switchover == pending
    assert cluster.clock.elapsed == 0  # no waiting for a hand-over nobody was asked for


def test_a_protected_path_without_credentials_is_denied_with_a_hint() -> None:
    cluster = Cluster("r1", "r2")
    cluster.tool.denied = True
    result = cluster.run("r2")
    assert result.outcome == planned.DENIED
    assert "--zk-auth (ELECTION_ZK_AUTH)" in result.message
    assert cluster.server.switchover is None


def test_another_replica_taking_over_is_a_failure_and_the_request_is_withdrawn() -> None:
    cluster = Cluster("r1", "r2", "r3")

    def r3_instead(request: SwitchoverRequest) -> None:
        cluster.clock.call_later(1.0, lambda: cluster.server.expire(cluster.replicas["r1"].session_id() or 0))
        cluster.clock.call_later(1.5, lambda: cluster.lead("r3"))

    cluster.tool.on_request = r3_instead
    result = cluster.run("r2")
    assert result.outcome == planned.OTHER_LEADER
    assert result.message.startswith("r3 (epoch ")
    assert result.message.endswith(f"took over from r1 (epoch {cluster.first.epoch}), not r2")
    assert cluster.server.switchover is None


def test_no_hand_over_within_the_wait_times_out_exactly_then_and_withdraws_the_request() -> None:
    cluster = Cluster("r1", "r2")
    result = cluster.run("r2", wait=5.0)
    assert result.outcome == planned.TIMED_OUT
    assert cluster.clock.elapsed == pytest.approx(5.0)
    epoch = cluster.first.epoch
    assert (
        result.message == f"no hand-over within 5s: r1 (epoch {epoch}) still leads; the request was withdrawn"
    )
    assert cluster.server.switchover is None


def test_a_leader_that_resigned_with_nobody_taking_over_times_out_saying_nobody_leads() -> None:
    cluster = Cluster("r1", "r2")
    resign = cluster.server.delete_leader_by_hand
    cluster.tool.on_request = lambda _r: cluster.clock.call_later(0.5, resign)
    result = cluster.run("r2", wait=3.0)
    assert result.outcome == planned.TIMED_OUT
    assert "nobody leads" in result.message
    assert cluster.clock.elapsed == pytest.approx(3.0, abs=0.1)


def test_a_target_that_takes_over_after_a_vacancy_is_seen_although_a_free_node_sets_no_watch() -> None:
    cluster = Cluster("r1", "r2")

    def slow(request: SwitchoverRequest) -> None:
        cluster.clock.call_later(0.5, cluster.server.delete_leader_by_hand)
        cluster.clock.call_later(2.0, lambda: cluster.lead("r2"))

    cluster.tool.on_request = slow
    result = cluster.run("r2")
    assert result.ok
    assert result.elapsed_ms is not None and 2000 <= result.elapsed_ms <= 2100


def test_the_wait_is_woken_by_the_leader_watch_not_by_polling() -> None:
    cluster = Cluster("r1", "r2")
    cluster.hand_over("r2", after=10.0)
    looks_before = cluster.server.reads
    assert cluster.run("r2").ok
    # the first look, the look after the request, and the one the watch woke: no poll in 10 s
    assert cluster.server.reads - looks_before <= 4


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, CoordinationError])
def test_an_interrupted_or_failed_wait_withdraws_the_request_and_raises(
    interrupt: Callable[[], BaseException],
) -> None:
    cluster = Cluster("r1", "r2")

    def fail() -> None:
        raise interrupt()

    cluster.tool.on_request = lambda _r: cluster.clock.call_later(1.0, fail)
    with pytest.raises(interrupt):  # type: ignore[call-overload]
        cluster.run("r2")
    assert cluster.server.switchover is None


def test_every_outcome_has_an_exit_status() -> None:
    from app.cli import _SWITCHOVER_EXIT  # noqa: PLC0415

    outcomes = {value for name, value in vars(planned).items() if name.isupper() and isinstance(value, str)}
    assert set(_SWITCHOVER_EXIT) == outcomes
    assert _SWITCHOVER_EXIT[planned.SWITCHED] == 0
    assert {_SWITCHOVER_EXIT[o] for o in (planned.REFUSED, planned.DENIED)} == {2}


@pytest.mark.parametrize(
    ("names", "no_lead", "says"),
    [
        (("r1",), (), "r1 (epoch"),
        (("r1", "r2", "r3"), ("r2", "r3"), "no other connected member may lead (--no-lead: r2, r3)"),
    ],
)
def test_without_a_target_a_cluster_where_nobody_else_may_lead_is_refused_before_anything_is_written(
    names: tuple[str, ...], no_lead: tuple[str, ...], says: str
) -> None:
    # Otherwise the leader lets go, nobody may take over while the request binds (the leader asked
    # is barred), and the cluster has no leader for the whole wait (review/s3_no_other_candidate.py).
    cluster = Cluster(*names, no_lead=no_lead)
    writes = cluster.server.writes
    result = cluster.run(None)
    assert result.outcome == planned.REFUSED
    assert says in result.message
    assert cluster.server.writes == writes and cluster.requests == []
