"""The machine: every transition of the spec's diagram happens, is logged once and counted."""

from __future__ import annotations

import logging

import pytest

from app.machine import HEARTBEAT_SECONDS, Context, StateMachine, StateName, Transition
from tests.fakes import FakeZooKeeper
from tests.unit.conftest import Harness


def test_every_transition_of_the_diagram_is_reachable(make_harness) -> None:  # type: ignore[no-untyped-def]
    seen: set[tuple[str, str]] = set()
    scenarios = []

    h = make_harness(server=FakeZooKeeper(up=False), zk_connect_timeout=1.0)  # Init -> Failover
    h.stop_at(2.0)  # Failover -> Stopping
    scenarios.append(h)
    h = make_harness()  # Init -> Attempter -> Leader, Leader -> Failover, Failover -> Init
    h.at(5.0, h.coordinator.suspend)
    h.at(6.0, h.coordinator.reconnect)
    h.stop_at(7.0)  # Leader -> Stopping
    scenarios.append(h)
    h = make_harness()
    h.at(0.5, h.coordinator.suspend)  # Leader -> Failover
    h.stop_at(1.0)
    scenarios.append(h)
    server = FakeZooKeeper()
    holder = make_harness(server=server)
    holder.coordinator.start()
    holder.coordinator.create_leader({"identity": "x"})
    h = make_harness(server=server)
    h.at(1.0, h.coordinator.suspend)  # Attempter -> Failover
    h.stop_at(2.0)
    scenarios.append(h)
    h = make_harness(server=server)
    h.stop_at(1.0)  # Attempter -> Stopping
    scenarios.append(h)
    h = make_harness(server=FakeZooKeeper(up=False))
    h.stop_at(1.0)  # Init -> Stopping
    scenarios.append(h)

    for scenario in scenarios:
        scenario.run()
        for frm in StateName:
            for to in StateName:
                if scenario.metric("election_state_transitions_total", **{"from": frm, "to": to}):
                    seen.add((str(frm), str(to)))
    diagram = {
        ("Init", "Attempter"),
        ("Init", "Failover"),
        ("Attempter", "Failover"),
        ("Leader", "Failover"),
        ("Attempter", "Leader"),
        ("Init", "Stopping"),
        ("Attempter", "Stopping"),
        ("Leader", "Stopping"),
        ("Failover", "Stopping"),
        ("Failover", "Init"),  # our decision: healed Failover starts over
    }
    assert diagram <= seen
    assert ("Failover", "Leader") not in seen


def test_each_transition_is_one_log_line_with_from_to_reason_and_time(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="election.machine")
    harness.stop_at(12.5)
    harness.run()
    lines = [r for r in caplog.records if getattr(r, "event", None) == "transition"]
    assert [(r.__dict__["from"], r.__dict__["to"]) for r in lines] == [
        ("Init", "Attempter"),
        ("Attempter", "Leader"),
        ("Leader", "Stopping"),
    ]
    leader_to_stopping = lines[-1]
    assert leader_to_stopping.__dict__["reason"] == "test stop"
    assert leader_to_stopping.__dict__["duration_seconds"] == 12.5


def test_state_metrics_follow_the_machine(harness: Harness) -> None:
    samples: list[tuple[float | None, float | None]] = []

    def sample() -> None:
        samples.append(
            (
                harness.metric("election_state", state="Leader"),
                harness.metric("election_state_duration_seconds"),
            )
        )

    harness.at(7.0, sample)
    harness.stop_at(8.0)
    harness.run()
    assert samples == [(1.0, 7.0)]
    assert harness.metric("election_is_leader") == 0
    assert harness.metric("election_leadership_acquired_total") == 1
    assert harness.metric("election_leadership_lost_total") == 1


def test_a_state_that_returns_nothing_outside_stopping_is_a_bug(harness: Harness) -> None:
    class Broken:
        name = StateName.INIT

        def run(self, ctx: Context) -> Transition | None:
            return None

    states = dict.fromkeys(StateName, Broken())
    machine = StateMachine(harness.replica.ctx, states)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="without naming the next state"):
        machine.run()
    assert machine.done.is_set()


def test_a_machine_needs_every_state() -> None:
    with pytest.raises(ValueError, match="no implementation"):
        StateMachine(None, {})  # type: ignore[arg-type]


def test_wait_until_returns_at_once_on_a_pending_wakeup(harness: Harness) -> None:
    ctx = harness.replica.ctx
    ctx.wake()
    assert ctx.wait_until(ctx.now() + 100) is True
    assert harness.clock.elapsed == 0.0
    assert ctx.wait_until(ctx.now() + 12) is False
    assert harness.clock.elapsed == 12.0
    # it slept in heartbeat-sized slices, so /healthz stays fresh during long waits
    assert [timeout for _when, timeout in harness.clock.waits] == [HEARTBEAT_SECONDS] * 2 + [2.0]
    assert ctx.heartbeat == ctx.now()


def test_request_stop_keeps_the_first_reason(harness: Harness) -> None:
    ctx = harness.replica.ctx
    ctx.request_stop("received SIGTERM")
    ctx.request_stop("received SIGINT")
    assert ctx.stop_reason == "received SIGTERM"
