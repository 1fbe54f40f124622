"""Fixtures for end-to-end tests: clusters of real replicas, and the hand-over figures they measure.

``make_cluster(zk_address, election_path, **settings)``
    A :class:`tests.e2e.cluster.Cluster` in the test's tmp dir; every replica is SIGKILLed at
    teardown, and a failing test's report carries each replica's command line and log tail.

``handovers``
    Collects measured hand-over times (``record(kind, seconds)``). At the end of the session they are
    printed as one line (visible with ``-s``), shown in the terminal summary, and appended to
    ``<pytest basetemp>/e2e-handover.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster

_CLUSTERS = pytest.StashKey[list[Cluster]]()
_SUMMARY = pytest.StashKey[list[str]]()

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCluster]:
    clusters: list[Cluster] = []
    request.node.stash[_CLUSTERS] = clusters

    def make(zk_address: str, election_path: str, **settings: str) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(clusters) + 1}", zk_address, election_path, **settings)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.kill_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    """Attach every replica's log tail to the report of a failed test phase."""
    report = yield
    if report.failed:
        clusters: list[Cluster] = item.stash.get(_CLUSTERS, [])
        for index, cluster in enumerate(clusters, start=1):
            report.sections.append((f"replicas of cluster {index} ({cluster.workdir})", cluster.report()))
    return report


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
    request.config.stash.setdefault(_SUMMARY, []).append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the summary line when output is captured (with ``-s`` it was printed already)."""
    if terminalreporter.config.getoption("capture") == "no":
        return
    for line in terminalreporter.config.stash.get(_SUMMARY, []):
        terminalreporter.write_line(line)
