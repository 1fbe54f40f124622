"""Fixtures for end-to-end tests: clusters of real replicas, and the hand-over figures they measure.

``make_cluster(zk_address, election_path, **settings)``
    A :class:`tools.cluster.Cluster` in the test's tmp dir; every replica is SIGKILLed at
    teardown, and a failing test's report carries each replica's command line and log tail.

``reaper``, ``zk_paths``
    For ``--exec`` tests (:mod:`tests.e2e.exec_support`): clusters whose children are all gone
    after the test, and each replica's own cuttable path to ``zk_server``.

``nodes``
    The election's ZooKeeper nodes read with a client of the test's own
    (:class:`tests.e2e.switchover_support.Nodes`).

``private_zk(name, missing="fail", **options)``
    A :class:`tools.zookeeper.LocalZooKeeper` of the test's own (a tick of its own, every loopback
    address...), stopped at teardown; with no local ZooKeeper to be had the test fails
    (``missing="skip"``: is skipped) with the reason.

``handovers``
    Collects measured hand-over times (``record(kind, seconds)``). At the end of the session they are
    printed as one line (visible with ``-s``), shown in the terminal summary, and appended to
    ``<pytest basetemp>/e2e-handover.json``.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest
from kazoo.client import KazooClient

from tests.e2e.exec_support import Reaper, ZkPaths
from tests.e2e.switchover_support import WAIT, Nodes
from tests.session_report import (  # the two hooks: pytest looks for them in this module
    on_failure,
    pytest_runtest_makereport,  # noqa: F401
    pytest_terminal_summary,  # noqa: F401
    summary_line,
)
from tools.cluster import Cluster
from tools.zookeeper import LocalZooKeeper, java_available

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCluster]:
    clusters: list[Cluster] = []
    on_failure(
        request.node,
        lambda: [
            (f"replicas of cluster {index} ({cluster.workdir})", cluster.report())
            for index, cluster in enumerate(clusters, start=1)
        ],
    )

    def make(zk_address: str, election_path: str, **settings: str) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(clusters) + 1}", zk_address, election_path, **settings)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.kill_all()


@pytest.fixture
def reaper(make_cluster: MakeCluster) -> Iterator[Reaper]:
    reaper = Reaper(make_cluster)
    yield reaper
    reaper.reap()


@pytest.fixture
def zk_paths(zk_server: Any) -> Iterator[ZkPaths]:
    paths = ZkPaths(zk_server.address)
    yield paths
    for path in paths.values():
        path.close()


@pytest.fixture
def nodes(zk_server: Any, election_path: str) -> Iterator[Nodes]:
    client = KazooClient(hosts=zk_server.address, timeout=10.0)
    client.start(timeout=WAIT)
    try:
        yield Nodes(client, election_path)
    finally:
        client.stop()
        client.close()


class PrivateZooKeeper(Protocol):
    def __call__(
        self, name: str, missing: Literal["fail", "skip"] = "fail", **options: Any
    ) -> LocalZooKeeper: ...


@pytest.fixture
def private_zk(tmp_path: Path) -> Iterator[PrivateZooKeeper]:
    with contextlib.ExitStack() as servers:

        def start(name: str, missing: Literal["fail", "skip"] = "fail", **options: Any) -> LocalZooKeeper:
            reason = java_available()
            if reason is not None and missing == "skip":
                pytest.skip(reason)
            if reason is not None:
                pytest.fail(f"needs a local ZooKeeper: {reason}", pytrace=False)
            server = LocalZooKeeper(tmp_path / name, **options)
            servers.callback(server.stop)  # before start: a server that fails half-way is stopped too
            server.start()
            return server

        yield start


@dataclass
class Handovers:
    """Hand-over measurements of this session: kind ("graceful" or "crash") -> seconds."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)

    def record(self, kind: str, seconds: float, **detail: Any) -> None:
        self.samples.setdefault(kind, []).append(seconds)
        self.details.append({"kind": kind, "seconds": round(seconds, 6), **detail})
        print(f"\n{kind} hand-over: {seconds * 1000:.1f} ms {detail or ''}")

    def summary(self) -> str:
        parts = []
        for kind, values in self.samples.items():
            ms = [v * 1000 for v in values]
            parts.append(
                f"{kind}: p50 {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms, "
                f"min {min(ms):.1f} ms (n={len(ms)})"
            )
        return "e2e hand-over " + "; ".join(parts)


@pytest.fixture(scope="session")
def handovers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Handovers]:
    collected = Handovers()
    yield collected
    if not collected.samples:
        return
    path = tmp_path_factory.getbasetemp() / "e2e-handover.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(
        {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "summary": {
                kind: {
                    "p50_seconds": round(statistics.median(values), 6),
                    "max_seconds": round(max(values), 6),
                    "min_seconds": round(min(values), 6),
                    "samples": [round(v, 6) for v in values],
                }
                for kind, values in collected.samples.items()
            },
            "details": collected.details,
        }
    )
    path.write_text(json.dumps(runs, indent=2) + "\n")
    line = f"{collected.summary()} -> {path}"
    print(f"\n{line}")
    if request.config.getoption("capture") != "no":  # with -s it was just printed
        summary_line(request.config, line)
