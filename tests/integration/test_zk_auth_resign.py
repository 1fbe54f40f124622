"""Digest auth and ACLs, and resigning, on a real ZooKeeper."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from app.adapters.kazoo_coordinator import KazooCoordinator
from app.ports.coordination import CoordinationError
from tests.integration.conftest import connected
from tests.zookeeper_fixture import ZooKeeperEndpoint

pytestmark = pytest.mark.integration


def test_with_credentials_only_their_holders_may_delete_the_leader_node_but_anyone_may_read(
    zk_server: ZooKeeperEndpoint,
    election_path: str,
    coordinators: list[KazooCoordinator],
    outsider: KazooClient,
) -> None:
    owner = connected(coordinators, zk_server.address, election_path, auth="election:s3cret")
    owner.prepare("a", {"identity": "a"})
    node = owner.create_leader({"identity": "a"})
    assert node is not None
    data, _stat = outsider.get(f"{election_path}/leader")
    assert b'"a"' in data
    with pytest.raises(NoAuthError):
        outsider.delete(f"{election_path}/leader")
    with pytest.raises(NoAuthError):
        outsider.set(f"{election_path}/leader", b"hijacked")
    with pytest.raises(NoAuthError):
        outsider.create(f"{election_path}/members/intruder", b"")
    # the election path's ancestors may be shared with other applications: they stay open
    parent = election_path.rsplit("/", 1)[0]
    outsider.create(f"{parent}/neighbour-{election_path.rsplit('/', 1)[1]}", b"")
    # a replica holding the credentials sees and competes normally
    peer = connected(coordinators, zk_server.address, election_path, auth="election:s3cret")
    seen = peer.leader(watch=False)
    assert seen is not None and seen.identity == "a"
    assert peer.create_leader({"identity": "b"}) is None


def test_wrong_credentials_cannot_take_over_a_protected_path(
    zk_server: ZooKeeperEndpoint, election_path: str, coordinators: list[KazooCoordinator]
) -> None:
    owner = connected(coordinators, zk_server.address, election_path, auth="election:s3cret")
    owner.prepare("a", {"identity": "a"})
    intruder = connected(coordinators, zk_server.address, election_path, auth="election:guess")
    with pytest.raises(CoordinationError, match="NoAuth"):
        intruder.prepare("x", {"identity": "x"})


def test_resign_deletes_only_our_own_node(
    zk_server: ZooKeeperEndpoint, election_path: str, coordinators: list[KazooCoordinator]
) -> None:
    first = connected(coordinators, zk_server.address, election_path)
    second = connected(coordinators, zk_server.address, election_path)
    ours = first.create_leader({"identity": "first"})
    assert ours is not None
    second.resign(ours)  # not second's node: left alone
    assert first.leader(watch=False) == ours
    first.resign(ours)
    assert first.leader(watch=False) is None
    theirs = second.create_leader({"identity": "second"})
    assert theirs is not None
    first.resign(ours)  # a stale term: the node now is someone else's, left alone
    assert second.leader(watch=False) == theirs
