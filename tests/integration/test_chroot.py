"""A chroot on ``--zk-servers`` against a real ZooKeeper (issue 9, item 12).

``zk1:2181,zk2:2181/apps/election`` is how services share one ensemble: every path of the election is
then below the chroot, as an unchrooted client sees it. The chroot may not exist yet: it is created with
the open ACL (other services may share it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import OPEN_ACL_UNSAFE

from app.adapters.kazoo_coordinator import KazooCoordinator
from tests.app_cli import run_app
from tests.integration.conftest import connected
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.cluster import Cluster
from tools.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def chroot(outsider: KazooClient) -> Iterator[str]:
    """A chroot two levels deep that does not exist yet (its parent does not either)."""
    top = f"/chroot-test-{uuid.uuid4().hex[:8]}"
    assert outsider.exists(top) is None
    yield f"{top}/apps"
    outsider.delete(top, recursive=True)


def test_the_adapter_creates_a_missing_chroot_with_the_open_acl_and_leads_below_it(
    zk_server: ZooKeeperEndpoint,
    outsider: KazooClient,
    chroot: str,
    election_path: str,
    coordinators: list[KazooCoordinator],  # after the chroot: closed before the chroot goes
) -> None:
    coordinator = connected(coordinators, f"{zk_server.address}{chroot}", election_path, what="connection")
    coordinator.prepare("alpha", {"identity": "alpha"})
    node = coordinator.create_leader({"identity": "alpha"})
    assert node is not None
    data, stat = outsider.get(f"{chroot}{election_path}/leader")
    assert json.loads(data)["identity"] == "alpha"
    assert stat.ephemeralOwner == coordinator.session_id()
    for path in (chroot.rsplit("/", 1)[0], chroot):
        acl, _stat = outsider.get_acls(path)
        assert acl == OPEN_ACL_UNSAFE, path
    assert outsider.exists(f"{election_path}/leader") is None  # nothing outside the chroot


def test_a_replica_with_a_chroot_leads_under_it_and_status_shows_it(
    zk_server: ZooKeeperEndpoint, outsider: KazooClient, chroot: str, election_path: str, tmp_path: Path
) -> None:
    connect = f"{zk_server.address}{chroot}"
    cluster = Cluster(tmp_path, connect, election_path)
    try:
        replica = cluster.start(1)[0]
        status = wait_for(
            lambda: (s := replica.status()) is not None and s["state"] == "Leader" and s,
            30,
            "the replica to lead",
        )
        assert status["zookeeper"]["servers"] == connect
        data, stat = outsider.get(f"{chroot}{election_path}/leader")
        assert json.loads(data)["identity"] == replica.identity
        assert f"0x{stat.ephemeralOwner:x}" == status["zookeeper"]["session_id"]

        code, view, stderr = cluster.election_status()
        assert code == 0, stderr
        assert view["chroot"] == chroot
        assert view["leader"]["identity"] == replica.identity
        where = (f"--zk-servers={connect}", f"--election-path={election_path}")
        text = run_app("status", *where, env=cluster.env, timeout=60)
        assert (
            text.stdout.splitlines()[0] == f"chroot:  {chroot} (leader node {chroot}{election_path}/leader)"
        )
    finally:
        cluster.kill_all()
