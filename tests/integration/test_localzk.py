"""Quick checks that the ZooKeeper fixtures and the kit's servers (tools.zookeeper, tools.ensemble) work."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.ensemble import LocalEnsemble
from tools.waiting import wait_for
from tools.zookeeper import LocalZooKeeper, java_available
from tools.zookeeper_target import ZkTarget

pytestmark = pytest.mark.integration

# Reconnect fast while a server is down (kazoo's default backoff grows to seconds).
FAST_RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5}


MakeClient = Callable[..., KazooClient]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """Start kazoo clients (session timeout in seconds) that are closed after the test."""
    clients: list[KazooClient] = []

    def make(hosts: str, session_timeout: float = 10.0) -> KazooClient:
        client = KazooClient(hosts=hosts, timeout=session_timeout, connection_retry=dict(FAST_RETRY))
        clients.append(client)
        client.start(timeout=10)
        return client

    yield make
    for client in clients:
        client.stop()
        client.close()


def test_zk_server_create_and_read(
    zk_server: ZooKeeperEndpoint, election_path: str, make_client: MakeClient
) -> None:
    assert zk_server.kind in ("external", "testcontainers", "local")
    assert zk_server.min_session_timeout > 0
    client = make_client(zk_server.address)
    client.create(f"{election_path}/node", b"hello", makepath=True)
    data, stat = client.get(f"{election_path}/node")
    assert data == b"hello"
    assert stat.ephemeralOwner == 0


def test_zk_local_restart_keeps_data(
    zk_local: LocalZooKeeper, election_path: str, make_client: MakeClient
) -> None:
    client = make_client(zk_local.address)
    client.create(election_path, b"persisted", makepath=True)
    client.stop()
    zk_local.restart()
    assert zk_local.mode() == "standalone"
    assert make_client(zk_local.address).get(election_path)[0] == b"persisted"


def test_zk_local_stop_start_client_reconnects(
    tmp_path: Path, election_path: str, make_client: MakeClient
) -> None:
    # A tick of 1 s lets the server grant a 10 s session: the claim is that a restart on the same
    # port and data dir keeps the session, and a JVM restarting on a loaded machine (then answering
    # its first requests slowly) took longer than the 2 s a 200 ms tick allowed.
    if (reason := java_available()) is not None:
        pytest.fail(reason, pytrace=False)
    with LocalZooKeeper(tmp_path / "zk", tick_ms=1000) as zk_local:
        client = make_client(zk_local.address, session_timeout=10.0)
        states: list[str] = []
        client.add_listener(states.append)
        session_id = client.client_id[0]
        client.create(election_path, b"mine", ephemeral=True, makepath=True)

        zk_local.stop()
        wait_for(lambda: client.state == KazooState.SUSPENDED, 5.0, "client to notice the server died")
        zk_local.start()
        wait_for(lambda: client.state == KazooState.CONNECTED, 10.0, "client to reconnect")

        # Restarted on the same port and data dir within the session timeout: the session survived.
        assert client.client_id[0] == session_id
        assert client.get(election_path)[0] == b"mine"
        assert KazooState.LOST not in states


def test_zk_local_freeze_thaw(zk_local: LocalZooKeeper) -> None:
    assert zk_local.min_session_timeout == 0.4
    assert zk_local.max_session_timeout == 4.0
    zk_local.freeze()
    with pytest.raises(socket.timeout):
        zk_local.four_letter("ruok", timeout=0.3)
    zk_local.thaw()
    assert zk_local.four_letter("ruok") == "imok"


def test_local_ensemble_survives_leader_loss(tmp_path: Path, make_client: MakeClient) -> None:
    if (reason := java_available()) is not None:
        pytest.fail(reason, pytrace=False)
    with LocalEnsemble(tmp_path / "ensemble", size=3) as ensemble:
        modes = sorted(member.mode() or "?" for member in ensemble.members)
        assert modes == ["follower", "follower", "leader"]
        client = make_client(ensemble.connect_string)
        client.create("/ensemble-check", b"quorum")

        old_leader = ensemble.leader()
        old_leader.stop()
        new_leader = ensemble.leader(timeout=10)
        assert new_leader is not old_leader
        wait_for(lambda: client.state == KazooState.CONNECTED, 5.0, "client on a surviving member")
        assert client.get("/ensemble-check")[0] == b"quorum"

        old_leader.start()  # rejoins as a follower
        assert old_leader.mode() == "follower"


def test_server_options_whitelist_more_words_and_log_every_request(
    tmp_path: Path, make_client: MakeClient
) -> None:
    if (reason := java_available()) is not None:
        pytest.fail(reason, pytrace=False)
    with LocalZooKeeper(tmp_path / "zk", four_letter_words=["conf"], request_log=True) as server:
        assert "tickTime=200" in server.four_letter("conf"), "an extra word is whitelisted"
        assert server.mode() == "standalone", "the kit's own words still are"
        sent = server.words_sent
        server.four_letter("ruok")
        assert server.words_sent == sent + 1, "every four-letter word is counted"
        make_client(server.address).create("/logged", b"")
        wait_for(
            lambda: "type:create" in server.log_path.read_text(errors="replace"),
            5.0,
            "the request log line of the create",
        )


def test_a_chaos_target_finds_the_server_of_a_session(tmp_path: Path, make_client: MakeClient) -> None:
    if (reason := java_available()) is not None:
        pytest.fail(reason, pytrace=False)
    with ZkTarget("standalone", tmp_path) as target:
        session = make_client(target.connect_string).client_id[0]
        assert target.sessions(target.servers[0]) == {session}
        assert target.server_of_session(session) is target.servers[0]
        target.servers[0].freeze()
        assert target.server_of_session(session) is None, "a frozen server answers nothing"
        target.heal()
        wait_for(lambda: target.server_of_session(session) is target.servers[0], 10.0, "the session back")
