"""A chroot on ``--zk-servers`` against a real ZooKeeper (issue 9, item 12).

``zk1:2181,zk2:2181/apps/election`` is how services share one ensemble: every path of the election is
then below the chroot, as an unchrooted client sees it. The chroot may not exist yet: it is created with
the open ACL (other services may share it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import OPEN_ACL_UNSAFE

from app.adapters.kazoo_coordinator import KazooCoordinator
from app.ports.coordination import ConnectionState
from tests.waiting import wait_for
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def outside(zk_server: ZooKeeperEndpoint) -> Iterator[KazooClient]:
    """A client without a chroot: it sees where the election's nodes really are."""
    client = KazooClient(hosts=zk_server.address, timeout=10.0)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def chroot(outside: KazooClient) -> Iterator[str]:
    """A chroot two levels deep that does not exist yet (its parent does not either)."""
    top = f"/chroot-test-{uuid.uuid4().hex[:8]}"
    assert outside.exists(top) is None
    yield f"{top}/apps"
    outside.delete(top, recursive=True)


def test_the_adapter_creates_a_missing_chroot_with_the_open_acl_and_leads_below_it(
    zk_server: ZooKeeperEndpoint, outside: KazooClient, chroot: str, election_path: str
) -> None:
    coordinator = KazooCoordinator(f"{zk_server.address}{chroot}", election_path, session_timeout=4.0)
    try:
        coordinator.start()
        wait_for(lambda: coordinator.state() is ConnectionState.CONNECTED, 10, message="connection")
        coordinator.prepare("alpha", {"identity": "alpha"})
        node = coordinator.create_leader({"identity": "alpha"})
        assert node is not None
        data, stat = outside.get(f"{chroot}{election_path}/leader")
        assert json.loads(data)["identity"] == "alpha"
        assert stat.ephemeralOwner == coordinator.session_id()
        for path in (chroot.rsplit("/", 1)[0], chroot):
            acl, _stat = outside.get_acls(path)
            assert acl == OPEN_ACL_UNSAFE, path
        assert outside.exists(f"{election_path}/leader") is None  # nothing outside the chroot
    finally:
        coordinator.close()


def test_a_replica_with_a_chroot_leads_under_it_and_status_shows_it(
    zk_server: ZooKeeperEndpoint, outside: KazooClient, chroot: str, election_path: str, tmp_path: Path
) -> None:
    connect = f"{zk_server.address}{chroot}"
    cluster = Cluster(tmp_path, connect, election_path)
    try:
        replica = cluster.start(1)[0]
        status = wait_for(
            lambda: (s := replica.status()) is not None and s["state"] == "Leader" and s,
            30,
            message="the replica to lead",
        )
        assert status["zookeeper"]["servers"] == connect
        data, stat = outside.get(f"{chroot}{election_path}/leader")
        assert json.loads(data)["identity"] == replica.identity
        assert f"0x{stat.ephemeralOwner:x}" == status["zookeeper"]["session_id"]

        code, view, stderr = cluster.election_status()
        assert code == 0, stderr
        assert view["chroot"] == chroot
        assert view["leader"]["identity"] == replica.identity
        text = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "status",
                f"--zk-servers={connect}",
                f"--election-path={election_path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=cluster.env,
        )
        assert (
            text.stdout.splitlines()[0] == f"chroot:  {chroot} (leader node {chroot}{election_path}/leader)"
        )
    finally:
        cluster.kill_all()
