"""Pytest plugin: ZooKeeper servers for integration tests.

Fixtures:

``zk_server`` (session)
    A shared server, the first that works of:

    1. ``ELECTION_TEST_ZK=host:port`` - an existing server (its minimum session
       timeout is taken as 4.0 s, or ``ELECTION_TEST_ZK_MIN_SESSION`` seconds);
    2. testcontainers with the official ``zookeeper:3.9`` image
       (``ZOO_TICK_TIME=200``), if a Docker engine answers a ping;
    3. a :class:`tools.zookeeper.LocalZooKeeper` (tick 200 ms) run from Debian's jars.

    If none works the requesting tests fail (not skip) with what was tried.
    Tests sharing it must stay under their own ``election_path``.

``zk_local`` (function)
    A fresh private LocalZooKeeper (tick 200 ms) a test may stop, restart,
    freeze and thaw.  Its log tail is added to the report of a failing test.

``election_path`` (function)
    A unique ZooKeeper path, ``/election-test/<test name>-<uuid8>``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import docker  # type: ignore[import-untyped]
import pytest
from kazoo.client import KazooClient
from testcontainers.core.container import DockerContainer

from tools.waiting import poll_until
from tools.zookeeper import LocalZooKeeper, four_letter_word, java_available

ZkKind = Literal["external", "testcontainers", "local"]

# ELECTION_TEST_ZK_IMAGE: another image for the testcontainers path (e.g. a locally built stand-in).
CONTAINER_IMAGE = os.environ.get("ELECTION_TEST_ZK_IMAGE", "zookeeper:3.9")
TICK_MS = 200
DEFAULT_EXTERNAL_MIN_SESSION = 4.0
LOG_TAIL_LINES = 80


@dataclass(frozen=True)
class ZooKeeperEndpoint:
    """What ``zk_server`` yields."""

    address: str  # kazoo ``hosts`` string, host:port
    min_session_timeout: float  # seconds; the server's minSessionTimeout
    kind: ZkKind


# --------------------------------------------------------------------------
# zk_server
# --------------------------------------------------------------------------


def _kazoo_health_check(address: str, timeout: float) -> None:
    """Connect a kazoo client and read ``/``; raises on failure."""
    client = KazooClient(hosts=address, timeout=10.0)
    try:
        client.start(timeout=timeout)
        client.get_children("/")
    finally:
        client.stop()
        client.close()


def _external() -> tuple[ZooKeeperEndpoint, Callable[[], None]] | None:
    address = os.environ.get("ELECTION_TEST_ZK", "").strip()
    if not address:
        return None
    raw_min = os.environ.get("ELECTION_TEST_ZK_MIN_SESSION", "").strip()
    try:
        min_session = float(raw_min) if raw_min else DEFAULT_EXTERNAL_MIN_SESSION
    except ValueError:
        pytest.fail(f"ELECTION_TEST_ZK_MIN_SESSION={raw_min!r} is not a number of seconds", pytrace=False)
    error: str | None = None
    try:
        _kazoo_health_check(address, timeout=10.0)
    except Exception as exc:
        error = repr(exc)
    if error is not None:  # fail outside `except` to keep the report short
        pytest.fail(f"ELECTION_TEST_ZK={address} is set but not usable: {error}", pytrace=False)
    return ZooKeeperEndpoint(address, min_session, "external"), lambda: None


def _docker_unavailable() -> str | None:
    """None if a Docker engine answers a ping within 2 s, else why not."""
    try:
        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _testcontainers() -> tuple[ZooKeeperEndpoint, Callable[[], None]]:
    container = DockerContainer(CONTAINER_IMAGE).with_env("ZOO_TICK_TIME", str(TICK_MS))
    container.with_exposed_ports(2181)
    container.start()
    try:
        address = f"{container.get_container_host_ip()}:{container.get_exposed_port(2181)}"
        last: list[object] = ["no answer yet"]

        def serving() -> bool:  # the image whitelists `srvr`
            try:
                reply = four_letter_word(address, "srvr", timeout=1.0)
            except OSError as exc:
                last[0] = exc
                return False
            last[0] = reply.strip() or "empty reply"
            return "Mode:" in reply

        if not poll_until(serving, time.monotonic() + 60.0, interval=0.1):
            raise RuntimeError(f"{CONTAINER_IMAGE} at {address} not serving after 60 s (last: {last[0]!r})")
        _kazoo_health_check(address, timeout=15.0)
    except BaseException:
        container.stop()
        raise
    return ZooKeeperEndpoint(address, 2 * TICK_MS / 1000.0, "testcontainers"), container.stop


def _local(tmp_path_factory: pytest.TempPathFactory) -> tuple[ZooKeeperEndpoint, Callable[[], None]]:
    server = LocalZooKeeper(tmp_path_factory.mktemp("zk-session"), tick_ms=TICK_MS)
    server.start()
    try:
        reply = server.four_letter("srvr")
        if "Mode:" not in reply:
            raise RuntimeError(f"srvr health check failed: {reply!r}\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise
    return ZooKeeperEndpoint(server.address, server.min_session_timeout, "local"), server.stop


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEndpoint]:
    """A ZooKeeper shared by the session: external, testcontainers or local (see module doc)."""
    started = _external()
    tried = ["ELECTION_TEST_ZK: not set"]
    if started is None:
        docker_reason = _docker_unavailable()
        if docker_reason is not None:
            tried.append(f"testcontainers ({CONTAINER_IMAGE}): Docker engine not reachable ({docker_reason})")
        else:
            try:
                started = _testcontainers()
            except Exception as exc:
                tried.append(f"testcontainers ({CONTAINER_IMAGE}): {type(exc).__name__}: {exc}")
                warnings.warn(f"zk_server: testcontainers failed, falling back: {exc}", stacklevel=1)
    if started is None:
        java_reason = java_available()
        if java_reason is not None:
            tried.append(f"local ZooKeeper from jars: {java_reason}")
        else:
            try:
                started = _local(tmp_path_factory)
            except RuntimeError as exc:
                tried.append(f"local ZooKeeper from jars: {exc}")
    if started is None:
        pytest.fail(
            "no ZooKeeper server for integration tests; tried:\n  - "
            + "\n  - ".join(tried)
            + "\nSet ELECTION_TEST_ZK=host:port, start Docker, or install java + Debian's `zookeeper`.",
            pytrace=False,
        )
    endpoint, stop = started
    try:
        yield endpoint
    finally:
        stop()


# --------------------------------------------------------------------------
# zk_local
# --------------------------------------------------------------------------

_ZK_LOCAL = pytest.StashKey[LocalZooKeeper]()


@pytest.fixture
def zk_local(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalZooKeeper]:
    """A fresh private LocalZooKeeper (tick 200 ms) the test may kill, restart or freeze."""
    reason = java_available()
    if reason is not None:
        pytest.fail(f"zk_local needs a local ZooKeeper: {reason}", pytrace=False)
    server = LocalZooKeeper(tmp_path_factory.mktemp("zk-local"), tick_ms=TICK_MS)
    request.node.stash[_ZK_LOCAL] = server
    server.start()  # a failure carries the log tail
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    """Attach the zk_local server's log tail to the report of a failed test phase."""
    report = yield
    server = item.stash.get(_ZK_LOCAL, None)
    if server is not None and report.failed:
        report.sections.append(
            (f"zk_local log tail ({server.log_path})", server.log_tail(LOG_TAIL_LINES)),
        )
    return report


# --------------------------------------------------------------------------
# election_path
# --------------------------------------------------------------------------


@pytest.fixture
def election_path(request: pytest.FixtureRequest) -> str:
    """A unique ZooKeeper path for this test: ``/election-test/<test name>-<uuid8>``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name).strip("_")[:80] or "test"
    return f"/election-test/{name}-{uuid.uuid4().hex[:8]}"
