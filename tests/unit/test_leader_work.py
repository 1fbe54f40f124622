"""Leader with a command-like work (the work port's contract as the states drive it): started once
under the create, renewed on the command's own confirmation schedule, stopped at the first doubt
and before the node is released, and a command that exits at once does not spin leadership."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.leases import exec_confirm_period, exec_grace_bound, lease_of
from app.machine import StateName
from app.states.leader import WORK_BACKOFF_MAX, work_backoff
from tests.unit.conftest import Harness, other_leader

LEASE = lease_of(9.0)  # the harness asks for 9 s and the fake server grants it: 6 s
PERIOD = exec_confirm_period(LEASE)  # 1 s


def _trace(h: Harness) -> list[tuple[str, float, Any]]:
    """The work's events, with the coordinator's resign and close in the same list."""
    assert h.work is not None
    events = h.work.events
    coordinator = h.coordinator
    resign, close = coordinator.resign, coordinator.close

    def traced_resign(node: Any) -> None:
        events.append(("resign", round(h.clock.elapsed, 6), node.epoch))
        resign(node)

    def traced_close() -> None:
        events.append(("close", round(h.clock.elapsed, 6), None))
        close()

    coordinator.resign = traced_resign  # type: ignore[method-assign]
    coordinator.close = traced_close  # type: ignore[method-assign]
    return events


def _commanded(
    make_harness: Callable[..., Harness], **work: Any
) -> tuple[Harness, list[tuple[str, float, Any]]]:
    """A harness whose replica runs a command-like work (``work`` sets the fake's attributes, such as
    ``exit_after``), and the trace of that work's events (:func:`_trace`)."""
    h = make_harness(command=True)
    assert h.work is not None
    for name, value in work.items():
        assert hasattr(h.work, name), name  # a typo would set nothing the fake reads
        setattr(h.work, name, value)
    return h, _trace(h)


def _kinds(events: list[tuple[str, float, Any]], *kinds: str) -> list[tuple[str, float, Any]]:
    return [e for e in events if e[0] in kinds]


def test_the_command_starts_once_under_the_create_and_is_renewed_every_sixth_of_the_lease(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h, events = _commanded(make_harness)
    assert h.run(until=3.5) == 0
    assert [e[:2] for e in _kinds(events, "start")] == [("start", 0.0)]
    renewals = _kinds(events, "renew")
    assert [t for _w, t, _d in renewals] == [1.0, 2.0, 3.0]
    # each renewal's deadline is its confirmation plus the lease: the first read goes out right
    # after the start (it sets the watch), later ones 5 ms ahead of their slot
    assert [d for _w, _t, d in renewals] == [
        round(x, 6) for x in (LEASE, 2.0 - 0.005 + LEASE, 3.0 - 0.005 + LEASE)
    ]
    assert h.storage.written == []  # no files with a command
    # stopped before the session (and with it the leader node) is released
    # the command is stopped before the session's close releases the node (Leader closes it on its
    # way to Stopping; Stopping's own close then finds it closed)
    assert [e[0] for e in events[-3:]] == ["stop", "close", "close"]


def test_a_suspended_connection_stops_the_command_at_once(make_harness) -> None:  # type: ignore[no-untyped-def]
    h, events = _commanded(make_harness)
    h.at(2.5, h.coordinator.suspend)
    h.run(until=3.0)
    stops = _kinds(events, "stop")
    assert stops[0][1] == 2.5
    assert "suspended" in stops[0][2]


def test_the_node_deleted_by_hand_stops_the_command_at_once(make_harness) -> None:  # type: ignore[no-untyped-def]
    h, events = _commanded(make_harness)
    h.at(2.25, h.server.delete_leader_by_hand)
    h.run(until=2.3)
    assert _kinds(events, "stop")[0][:2] == ("stop", 2.25)


def test_a_command_that_exits_at_once_waits_a_doubling_backoff_before_it_leads_again(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h, events = _commanded(make_harness, exit_after=0.5)
    assert h.run(until=40.0) == 0  # a crashing command is not the replica's failure: no exit 1
    starts = [t for _w, t, _d in _kinds(events, "start")]
    # exits at start + 0.5, then sits out 1, 2, 4, 8, 16 s outside the queue
    assert starts == [0.0, 1.5, 4.0, 8.5, 17.0, 33.5]
    # every exit was followed by a resignation at once, before the next start
    kinds = [e[0] for e in _kinds(events, "start", "exited", "resign")]
    assert kinds[:6] == ["start", "exited", "resign", "start", "exited", "resign"]


def test_a_command_that_finished_with_status_0_is_handled_the_same(make_harness) -> None:  # type: ignore[no-untyped-def]
    h, events = _commanded(make_harness, exit_after=0.5, exit_code="0")
    reasons = h.seen_at(lambda: h.replica.ctx.entered_because, 0.75)
    h.run(until=5.0)
    assert [t for _w, t, _d in _kinds(events, "start")] == [0.0, 1.5, 4.0]
    assert reasons[0].startswith("the work finished after 0.5s; resigned leadership")


def test_a_long_run_resets_the_backoff(make_harness) -> None:  # type: ignore[no-untyped-def]
    h, events = _commanded(make_harness, exit_after=61.0)
    h.run(until=200.0)
    assert [t for _w, t, _d in _kinds(events, "start")] == [0.0, 62.0, 124.0, 186.0]


def test_the_backoff_bound() -> None:
    assert [work_backoff(k) for k in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert work_backoff(100) == WORK_BACKOFF_MAX


def test_a_standby_behind_a_command_leader_never_gives_up_for_lack_of_files(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness(command=True, failover_timeout=30.0)
    other_leader(h.server)
    ready = h.seen_at(lambda: h.replica.ready()[0], 299.0)
    assert h.run(until=300.0) == 0
    assert ready == [True]
    assert h.replica.machine.state is StateName.STOPPING


def test_status_shows_the_work(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(command=True)
    seen = h.seen_at(lambda: h.replica.status()["work"], 1.5)
    h.run(until=2.0)
    assert seen == [{"kind": "exec", "running": True}]


def test_the_grace_arithmetic_of_the_docs() -> None:
    assert round(exec_grace_bound(lease_of(10.0)), 3) == 4.194  # (4/9) x 10 s - 0.25 s
    assert round(exec_grace_bound(lease_of(4.0)), 3) == 1.528
    assert exec_confirm_period(lease_of(9.0)) == 1.0


def test_the_file_writer_reports_its_work_running_from_the_first_file_to_the_terms_end(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h = make_harness()
    seen = h.seen_at(lambda: h.metric("election_work_running"), 5.0, 5.5)
    h.at(5.0, h.coordinator.suspend)
    h.run(until=6.0)
    assert seen == [1.0, 0.0]
