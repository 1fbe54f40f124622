"""KazooCoordinator (the coordination port on kazoo) against a real ZooKeeper.

The shared ``zk_server`` covers the node semantics (each test under its own ``election_path``);
a private ``zk_local`` covers the connection states, which need the server stopped, restarted or
frozen. Timing figures (how long a call took to fail, how long until SUSPENDED) are asserted
against the bounds the port promises, with the measured value in the failure message.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from app.adapters.kazoo_coordinator import KazooCoordinator
from app.ports.coordination import ConnectionState, CoordinationError, LeaderNode
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.ensemble import LocalEnsemble
from tools.waiting import wait_for
from tools.zookeeper import LocalZooKeeper

pytestmark = pytest.mark.integration

# Session timeout on the shared server: short, but not so short that a loaded 2-core machine
# misses pings (kazoo pings every third of it).
SHARED_SESSION = 2.0
# Slack for the scheduler on a busy machine when a figure is checked against a bound.
SLACK = 0.5
CONNECT_DEADLINE = 10.0


@dataclass
class Recorder:
    """A coordinator plus what its subscriber saw: every state at each callback, and a wake-up."""

    coordinator: KazooCoordinator
    states: list[ConnectionState] = field(default_factory=list)
    called: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def __post_init__(self) -> None:
        self.coordinator.subscribe(self._on_change)

    def _on_change(self) -> None:  # kazoo's thread: record only
        self.calls += 1
        state = self.coordinator.state()
        if not self.states or self.states[-1] is not state:
            self.states.append(state)
        self.called.set()

    def start(self) -> Recorder:
        self.coordinator.start()
        wait_for(self.connected, CONNECT_DEADLINE, "coordinator to connect")
        return self

    def connected(self) -> bool:
        return self.coordinator.state() is ConnectionState.CONNECTED

    def suspended(self) -> bool:
        return self.coordinator.state() is ConnectionState.SUSPENDED

    def session(self) -> int:
        session = self.coordinator.session_id()
        assert session is not None, f"no session (state {self.coordinator.state()})"
        return session


MakeRecorder = Callable[..., Recorder]


@pytest.fixture
def make_coordinator(election_path: str) -> Iterator[MakeRecorder]:
    """Build (not start) coordinators under this test's election path; all closed at teardown."""
    made: list[KazooCoordinator] = []

    def make(hosts: str, session_timeout: float, **kwargs: float) -> Recorder:
        kwargs.setdefault("reconnect_backoff_max", 0.5)
        coordinator = KazooCoordinator(hosts, election_path, session_timeout=session_timeout, **kwargs)
        made.append(coordinator)
        return Recorder(coordinator)

    yield make
    for coordinator in made:
        coordinator.close()


@pytest.fixture
def shared(zk_server: ZooKeeperEndpoint, make_coordinator: MakeRecorder) -> Callable[[], Recorder]:
    """Start a coordinator on the shared server."""
    session_timeout = max(zk_server.min_session_timeout, SHARED_SESSION)
    return lambda: make_coordinator(zk_server.address, session_timeout).start()


def claim(recorder: Recorder, identity: str) -> LeaderNode:
    node = recorder.coordinator.create_leader({"identity": identity, "acquired_at": "2026-01-01T00:00:00Z"})
    assert node is not None, f"{identity} could not create a free leader node"
    return node


def timed_failure(call: Callable[[], object]) -> tuple[float, CoordinationError]:
    """Run ``call``, which must raise CoordinationError; return how long it took and the error."""
    started = time.monotonic()
    with pytest.raises(CoordinationError) as caught:
        call()
    return time.monotonic() - started, caught.value


# -- on the shared server -------------------------------------------------------------------


def test_start_connects_and_notifies_subscribers(
    zk_server: ZooKeeperEndpoint, make_coordinator: MakeRecorder
) -> None:
    recorder = make_coordinator(zk_server.address, max(zk_server.min_session_timeout, SHARED_SESSION))
    assert recorder.coordinator.state() is ConnectionState.CLOSED
    assert recorder.coordinator.session_id() is None

    recorder.start()

    assert recorder.called.is_set()
    assert recorder.states[-1] is ConnectionState.CONNECTED
    assert recorder.session() > 0


def test_prepare_creates_the_path_and_one_member_per_session(
    shared: Callable[[], Recorder], outsider: KazooClient
) -> None:
    recorder = shared()
    coordinator = recorder.coordinator
    assert outsider.exists(coordinator.members_path) is None

    info = {"identity": "r1", "http_address": "127.0.0.1:1"}
    coordinator.prepare("r1", info)
    coordinator.prepare("r1", info)  # idempotent within a session

    children = outsider.get_children(coordinator.members_path)
    assert len(children) == 1, children
    assert children[0].startswith("m-r1-")
    _data, stat = outsider.get(f"{coordinator.members_path}/{children[0]}")
    assert stat.ephemeralOwner == recorder.session()
    assert [(m.session, m.data) for m in coordinator.members()] == [(recorder.session(), info)]


def test_leader_is_none_while_the_node_is_free(shared: Callable[[], Recorder]) -> None:
    assert shared().coordinator.leader(watch=False) is None


def test_create_leader_returns_our_node_with_czxid_as_epoch(
    shared: Callable[[], Recorder], outsider: KazooClient
) -> None:
    recorder = shared()
    node = claim(recorder, "r1")

    stat = outsider.exists(recorder.coordinator.leader_path)
    assert stat is not None
    assert node.owner == recorder.session() == stat.ephemeralOwner
    assert node.epoch == stat.czxid
    assert node.identity == "r1"
    assert recorder.coordinator.leader(watch=False) == node


def test_second_coordinator_cannot_create_and_sees_the_first(shared: Callable[[], Recorder]) -> None:
    first, second = shared(), shared()
    node = claim(first, "r1")

    assert second.coordinator.create_leader({"identity": "r2", "acquired_at": "now"}) is None
    seen = second.coordinator.leader(watch=False)
    assert seen is not None
    assert (seen.identity, seen.owner, seen.epoch) == ("r1", first.session(), node.epoch)


def test_create_leader_on_a_node_we_already_hold_returns_none_and_a_look_shows_it_ours(
    shared: Callable[[], Recorder],
) -> None:
    recorder = shared()
    node = claim(recorder, "r1")

    # a retried create (its first reply lost): NodeExists, one request, no read behind our back
    assert recorder.coordinator.create_leader({"identity": "r1", "acquired_at": "later"}) is None
    seen = recorder.coordinator.leader(watch=False)
    assert seen is not None
    assert (seen.owner, seen.epoch) == (node.owner, node.epoch) == (recorder.session(), node.epoch)


def test_watch_reports_the_leader_node_deleted_when_its_owner_closes(shared: Callable[[], Recorder]) -> None:
    owner, watcher = shared(), shared()
    claim(owner, "r1")
    assert watcher.coordinator.leader(watch=True) is not None
    watcher.called.clear()
    calls = watcher.calls

    owner.coordinator.close()  # the session's ephemeral nodes go with it

    wait_for(watcher.called.is_set, 5.0, "the watch to call the subscriber")
    assert watcher.calls > calls
    assert watcher.connected(), "the watcher's own connection did not change"
    assert watcher.coordinator.leader(watch=False) is None


def test_a_look_at_a_free_node_sets_no_watch_on_its_creation(shared: Callable[[], Recorder]) -> None:
    # whoever finds the node free creates it at once: a creation watch would only wake the creator
    watcher, other, probe = shared(), shared(), shared()
    assert watcher.coordinator.leader(watch=True) is None
    assert probe.coordinator.leader(watch=True) is None
    watcher.called.clear()
    calls = watcher.calls

    claim(other, "r2")
    # a watch set after the creation, by a look that finds the node, is told of its deletion; by
    # then the creation's event, had there been one, would have reached the first watcher too
    assert probe.coordinator.leader(watch=True) is not None
    probe.called.clear()
    other.coordinator.close()
    wait_for(probe.called.is_set, 5.0, "the deletion to reach the probe's watch")
    assert watcher.calls == calls, "a look at a free node set a watch on its creation"


def test_a_look_that_races_a_create_returns_the_new_leaders_data(
    shared: Callable[[], Recorder], outsider: KazooClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every hand-over races so: a waiting replica's getData finds no node, another replica creates
    # it, and the exists() that follows finds it. The look must still say who leads.
    watcher = shared()
    coordinator = watcher.coordinator
    client = coordinator._client  # the adapter's own kazoo client, to slip a create between its reads
    real_exists = client.exists_async

    def exists_after_a_racing_create(path: str, watch: Callable[..., object] | None = None) -> object:
        monkeypatch.setattr(client, "exists_async", real_exists)  # once
        racer = json.dumps({"identity": "racer", "acquired_at": "then"}).encode()
        outsider.create(path, racer, ephemeral=True)
        return real_exists(path, watch=watch)

    outsider.ensure_path(coordinator.leader_path.rsplit("/", 1)[0])
    monkeypatch.setattr(client, "exists_async", exists_after_a_racing_create)

    node = coordinator.leader(watch=True)

    assert node is not None
    assert (node.identity, node.acquired_at, node.owner) == ("racer", "then", outsider.client_id[0])
    watcher.called.clear()
    outsider.delete(coordinator.leader_path)
    wait_for(watcher.called.is_set, 5.0, "the watch set by the raced look to fire")


def test_epochs_grow_with_every_term(shared: Callable[[], Recorder]) -> None:
    epochs = []
    for term in range(3):
        recorder = shared()
        epochs.append(claim(recorder, f"r{term}").epoch)
        recorder.coordinator.close()
    assert epochs == sorted(epochs) and len(set(epochs)) == 3, epochs


def test_members_lists_connected_replicas_in_registration_order(shared: Callable[[], Recorder]) -> None:
    replicas = [shared() for _ in range(3)]
    for index, recorder in enumerate(replicas):
        recorder.coordinator.prepare(f"r-{index}", {"identity": f"r-{index}"})
    sessions = [recorder.session() for recorder in replicas]

    listed = replicas[2].coordinator.members()
    assert [m.session for m in listed] == sessions
    assert [m.data["identity"] for m in listed] == ["r-0", "r-1", "r-2"]

    replicas[1].coordinator.close()
    assert [m.session for m in replicas[0].coordinator.members()] == [sessions[0], sessions[2]]


def test_after_close_state_is_closed_and_calls_raise_coordination_error(
    shared: Callable[[], Recorder],
) -> None:
    recorder = shared()
    coordinator = recorder.coordinator
    claim(recorder, "r1")

    coordinator.close()
    coordinator.close()  # idempotent

    assert coordinator.state() is ConnectionState.CLOSED
    assert recorder.states[-1] is ConnectionState.CLOSED
    assert coordinator.session_id() is None
    for call in (
        lambda: coordinator.prepare("r1", {}),
        lambda: coordinator.leader(watch=True),
        lambda: coordinator.create_leader({"identity": "r1"}),
        coordinator.members,
    ):
        _elapsed, error = timed_failure(call)
        assert type(error) is CoordinationError  # not a kazoo exception


# -- on a private server that the tests break -------------------------------------------------


def test_server_stop_reports_suspended_and_calls_fail_within_the_operation_timeout(
    zk_local: LocalZooKeeper, make_coordinator: MakeRecorder
) -> None:
    session_timeout = 2.0
    recorder = make_coordinator(zk_local.address, session_timeout).start()
    coordinator = recorder.coordinator
    coordinator.prepare("r1", {"identity": "r1"})
    claim(recorder, "r1")

    stopped_at = time.monotonic()
    zk_local.stop()
    wait_for(recorder.suspended, session_timeout, "SUSPENDED within the session timeout")
    suspended_after = time.monotonic() - stopped_at
    print(f"\nSUSPENDED {suspended_after * 1000:.0f} ms after the server was killed")
    assert ConnectionState.SUSPENDED in recorder.states
    assert coordinator.session_id() is None

    bound = coordinator.operation_timeout + SLACK
    for name, call in {
        "leader": lambda: coordinator.leader(watch=True),
        "create_leader": lambda: coordinator.create_leader({"identity": "r1"}),
        "members": coordinator.members,
        "prepare": lambda: coordinator.prepare("r1", {}),
    }.items():
        elapsed, error = timed_failure(call)
        print(f"{name} failed after {elapsed * 1000:.0f} ms: {error}")
        assert elapsed < bound, (
            f"{name} took {elapsed:.3f}s (operation timeout {coordinator.operation_timeout}s)"
        )


@pytest.fixture
def zk_local_long_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalZooKeeper]:
    """A private server with a 1 s tick, so that it grants 20 s sessions: a JVM restart on a
    loaded 2-core machine stays well inside the session. (With a 4 s session it was seen to expire
    once; with 10 s, once more, when a restarted JVM starved of CPU left the Connect unanswered
    for 10 s: the server itself then expires the session, which is right, and the test's point
    is lost.)"""
    server = LocalZooKeeper(tmp_path_factory.mktemp("zk-long"), tick_ms=1000)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_server_restart_within_the_session_keeps_the_session_and_the_node(
    zk_local_long_sessions: LocalZooKeeper, make_coordinator: MakeRecorder
) -> None:
    server = zk_local_long_sessions
    session_timeout = server.max_session_timeout  # 20 s: room for the JVM to come back
    # The address twice, as a two-server connect string: kazoo waits for a Connect reply for the
    # session timeout divided by the number of hosts. Seen twice in full CI runs (not alone, 0 of
    # 11): a reconnection attempt to the restarting server got no reply, and with one host kazoo
    # waited the whole session for it, so the session expired although the server was back in
    # 0.7 s. With two entries an unanswered attempt is given up after half the session.
    recorder = make_coordinator(f"{server.address},{server.address}", session_timeout).start()
    session = recorder.session()
    node = claim(recorder, "r1")
    seen = len(recorder.states)

    began = time.monotonic()
    server.restart()
    restarted = time.monotonic() - began
    wait_for(
        recorder.connected,
        session_timeout,
        f"reconnection within the session timeout (the server took {restarted:.1f}s to restart)",
    )

    assert recorder.states[seen:] == [ConnectionState.SUSPENDED, ConnectionState.CONNECTED], (
        f"server restart took {restarted:.1f}s, reconnected {time.monotonic() - began:.1f}s after it began"
    )
    assert recorder.session() == session
    held = recorder.coordinator.leader(watch=False)
    assert held is not None
    assert (held.owner, held.epoch) == (session, node.epoch)


def test_freeze_beyond_the_session_timeout_loses_the_session_and_the_node(
    zk_local: LocalZooKeeper, make_coordinator: MakeRecorder
) -> None:
    session_timeout = 1.0
    recorder = make_coordinator(zk_local.address, session_timeout).start()
    coordinator = recorder.coordinator
    old_session = recorder.session()
    old = claim(recorder, "r1")

    # At the thaw, the server's session expirer races the client's pending reconnect: now and then
    # (about 1 run in 20 here) the reconnect is served first and ZooKeeper itself revives the
    # session. That is the server's choice, not the adapter's, so freeze again (at most 3 times);
    # the adapter must report either outcome truthfully.
    for _attempt in range(3):
        seen = len(recorder.states)
        frozen_at = time.monotonic()
        zk_local.freeze()
        # Connected but unanswered: the call must still give up within the operation timeout.
        elapsed, _error = timed_failure(lambda: coordinator.leader(watch=True))
        assert elapsed < coordinator.operation_timeout + SLACK, (
            f"a call to a frozen server took {elapsed:.3f}s"
        )
        wait_for(recorder.suspended, session_timeout + SLACK, "SUSPENDED while the server is frozen")
        # Stay frozen well past the session timeout, so that the session has expired when it thaws.
        time.sleep(max(0.0, frozen_at + 3 * session_timeout - time.monotonic()))
        assert coordinator.state() is ConnectionState.SUSPENDED, "kazoo cannot know of expiry while frozen"
        zk_local.thaw()

        wait_for(recorder.connected, CONNECT_DEADLINE, "reconnection after the thaw")
        if coordinator.session_id() != old_session:
            break
        assert recorder.states[seen:] == [ConnectionState.SUSPENDED, ConnectionState.CONNECTED]
        revived = coordinator.leader(watch=False)
        assert revived is not None and revived.owner == old_session, "a revived session keeps its node"
    else:
        pytest.fail("ZooKeeper revived the frozen-out session at every thaw")

    assert recorder.states[seen:] == [
        ConnectionState.SUSPENDED,
        ConnectionState.LOST,
        ConnectionState.CONNECTED,
    ]
    now = coordinator.leader(watch=False)
    assert now is None or now.epoch != old.epoch, f"the expired session's node survived: {now}"


def test_queue_positions_follow_join_order_and_only_the_next_is_told_when_the_head_leaves(
    shared: Callable[[], Recorder],
) -> None:
    first, second, third = shared(), shared(), shared()
    for name, recorder in zip("abc", (first, second, third), strict=True):
        recorder.coordinator.prepare(name, {})
        recorder.coordinator.enter_queue()
    positions = [r.coordinator.queue_position() for r in (first, second, third)]
    assert positions == [0, 1, 2]
    second.called.clear()
    third.called.clear()
    third_calls = third.calls

    first.coordinator.close()

    wait_for(second.called.is_set, 5.0, "the second candidate to be told the head left")
    assert second.coordinator.queue_moved() is True  # the one ahead went: we may be the head now
    assert second.coordinator.queue_moved() is False  # once
    assert second.coordinator.take_over_signal() is False  # not the leader node's deletion
    assert third.coordinator.queue_moved() is False
    assert second.coordinator.queue_position() == 0
    # the third watches the second only: nothing reached it (its own connection did not change)
    assert third.calls == third_calls
    assert third.coordinator.queue_position() == 1


def test_joining_twice_in_one_session_keeps_one_candidate_node(
    shared: Callable[[], Recorder], outsider: KazooClient
) -> None:
    recorder = shared()
    coordinator = recorder.coordinator
    coordinator.prepare("r1", {})
    coordinator.enter_queue()
    coordinator.enter_queue()
    assert len(outsider.get_children(coordinator.candidates_path)) == 1
    # a create whose reply was lost left a node of our session behind: joining adopts it
    coordinator._candidate = None  # forget what we joined, as after a lost reply
    coordinator.enter_queue()
    assert len(outsider.get_children(coordinator.candidates_path)) == 1
    assert coordinator.queue_position() == 0


def test_a_candidate_node_deleted_by_hand_is_reported(
    shared: Callable[[], Recorder], outsider: KazooClient
) -> None:
    coordinator = shared().coordinator
    coordinator.prepare("r1", {})
    coordinator.enter_queue()
    for child in outsider.get_children(coordinator.candidates_path):
        outsider.delete(f"{coordinator.candidates_path}/{child}")
    with pytest.raises(CoordinationError, match=r"candidate node .* is gone"):
        coordinator.queue_position()


# -- the session the server granted, and fresh reads (issue 9, items 1 and 3) ------------------


def test_the_granted_session_timeout_is_the_servers_not_the_requested_one(
    zk_local: LocalZooKeeper, make_coordinator: MakeRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # tickTime 200: the server grants at most 20 ticks = 4 s, whatever is asked for.
    recorder = make_coordinator(zk_local.address, 10.0, reconnect_backoff_max=0.2)
    coordinator = recorder.coordinator
    assert coordinator.granted_session_timeout() is None  # not connected yet
    with caplog.at_level("WARNING", logger="election.zookeeper"):
        recorder.start()
        assert coordinator.granted_session_timeout() == zk_local.max_session_timeout == 4.0
        assert coordinator.requested_session_timeout == 10.0
        # operations are bounded by a third of what was granted, not of what was asked for
        assert coordinator.operation_timeout == pytest.approx(4.0 / 3.0)
        # on every reconnection too; the warning is logged once, not at each
        zk_local.restart()
        wait_for(recorder.connected, 4.0, "reconnection within the granted session")
        assert coordinator.granted_session_timeout() == 4.0
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "zk_session_timeout_granted"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "granted a session timeout of 4s instead of the 10s" in warnings[0].getMessage()


def test_a_granted_timeout_as_requested_is_not_warned_about(
    zk_local: LocalZooKeeper, make_coordinator: MakeRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="election.zookeeper"):
        recorder = make_coordinator(zk_local.address, 2.0).start()
    assert recorder.coordinator.granted_session_timeout() == 2.0
    assert not [r for r in caplog.records if getattr(r, "event", "") == "zk_session_timeout_granted"]


def test_kazoo_still_routes_the_connect_request_where_we_read_the_granted_timeout() -> None:
    # If a kazoo upgrade moves ConnectionHandler._invoke, this (and every coordinator) fails loudly
    # instead of silently leasing on the requested timeout.
    from kazoo.protocol.connection import ConnectionHandler  # noqa: PLC0415

    from app.adapters.kazoo_coordinator import _record_connect_replies  # noqa: PLC0415

    assert callable(getattr(ConnectionHandler, "_invoke", None))

    class NoConnection:
        pass

    with pytest.raises(CoordinationError, match="cannot learn the session timeout"):
        _record_connect_replies(NoConnection(), lambda _granted: None)  # type: ignore[arg-type]


def _ensemble_with_a_long_sync_limit(workdir: Path, sync_limit: int) -> LocalEnsemble:
    """A 3-node ensemble (tick 200 ms) whose followers keep serving for sync_limit ticks after
    losing the quorum leader: the window in which a cut-off follower answers plain reads."""
    ensemble = LocalEnsemble(workdir, size=3, tick_ms=200)
    for member in ensemble.members:
        base = member._config

        def config(base: Callable[[], dict[str, str]] = base) -> dict[str, str]:
            return {**base(), "syncLimit": str(sync_limit)}

        member._config = config  # type: ignore[method-assign]
    return ensemble


def test_a_follower_cut_off_from_the_quorum_answers_plain_reads_but_not_fresh_ones(
    tmp_path: Path, make_coordinator: MakeRecorder
) -> None:
    # Our client talks to one follower only; the quorum leader freezes (SIGSTOP). For syncLimit x
    # tickTime (here 10 s) the follower goes on serving reads from its own copy, while the quorum
    # (once it re-forms) may expire our session: a plain read is no proof of leadership. A fresh
    # read (sync, then read) needs the quorum leader, so it fails within the operation timeout.
    with _ensemble_with_a_long_sync_limit(tmp_path / "ensemble", sync_limit=50) as ensemble:
        leader = ensemble.leader()
        follower = next(m for m in ensemble.members if m is not leader)
        recorder = make_coordinator(follower.address, 4.0).start()
        coordinator = recorder.coordinator
        node = claim(recorder, "r1")
        assert coordinator.leader(watch=False, fresh=True) == node  # with the quorum: fine
        leader.freeze()
        try:
            plain = coordinator.leader(watch=False)
            assert plain is not None and plain.epoch == node.epoch  # the hole: the follower answers
            elapsed, error = timed_failure(lambda: coordinator.leader(watch=True, fresh=True))
            assert elapsed < coordinator.operation_timeout + SLACK, f"took {elapsed:.2f}s: {error}"
        finally:
            leader.thaw()
