"""What the integration tests share on the session's real ZooKeeper: bare coordinators that are
closed when the test is over, and a plain client that looks behind the adapter's back.

The server and the per-test election path come from ``tests/zookeeper_fixture.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from app.adapters.kazoo_coordinator import KazooCoordinator
from app.ports.coordination import ConnectionState
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.waiting import wait_for

NewReplica = Callable[..., KazooCoordinator]

SESSION = 4.0  # the coordinators' session timeout: short, so that a test's leftovers go quickly


@pytest.fixture
def outsider(zk_server: ZooKeeperEndpoint) -> Iterator[KazooClient]:
    """A plain kazoo client on the shared server, without a chroot: it sees (and may write) the
    election's nodes where they really are."""
    client = KazooClient(hosts=zk_server.address, timeout=10.0)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def coordinators(zk_server: ZooKeeperEndpoint, election_path: str) -> Iterator[list[KazooCoordinator]]:
    """Coordinators a test made with :func:`connected` or :func:`replica`: all closed at its end."""
    made: list[KazooCoordinator] = []
    yield made
    for coordinator in made:
        coordinator.close()


def connected(
    made: list[KazooCoordinator], address: str, path: str, *, auth: str | None = None, what: str = "connect"
) -> KazooCoordinator:
    """A coordinator on ``address`` for the election at ``path``, added to ``made``, once connected
    (10 s at most: else the test fails naming ``what``)."""
    coordinator = KazooCoordinator(address, path, session_timeout=SESSION, auth=auth)
    made.append(coordinator)
    coordinator.start()
    wait_for(lambda: coordinator.state() is ConnectionState.CONNECTED, 10, what)
    return coordinator


def replica(
    made: list[KazooCoordinator],
    address: str,
    path: str,
    name: str,
    *,
    auth: str | None = None,
    **info: object,
) -> KazooCoordinator:
    """A connected coordinator that has joined as member ``name`` (``info`` added to its data)."""
    coordinator = connected(made, address, path, auth=auth, what=f"{name} to connect")
    coordinator.prepare(name, {"identity": name, **info})
    return coordinator


@pytest.fixture
def new_replica(
    zk_server: ZooKeeperEndpoint, election_path: str, coordinators: list[KazooCoordinator]
) -> NewReplica:
    """Makes members of this test's election on the shared server: ``new_replica(name, auth=...,
    **info)`` is :func:`replica` there."""
    return lambda name, **options: replica(coordinators, zk_server.address, election_path, name, **options)
