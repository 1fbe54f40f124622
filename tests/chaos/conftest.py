"""Fixtures of the chaos suite: ZooKeeper targets shared by the session, elections, and the results file.

``zk_target(kind)``
    A :class:`tools.zookeeper_target.ZkTarget` ("standalone" or a 3-node "ensemble", tickTime 200 ms),
    started once per session and healed (thawed, restarted) before each test that uses it. Each test
    has its own election path, so tests never see each other's nodes.
``make_chaos(kind, **options)``
    A started :class:`tests.chaos.runner.Chaos` in the test's tmp dir, closed at teardown (replicas
    killed, relays closed, firewall rules removed, tmpfs unmounted); a failing test's report carries
    each replica's command line and log tail.
``chaos_results``
    Collects every :class:`FaultResult`. At the end of the session they are written as JSON to
    ``$ELECTION_CHAOS_RESULTS`` (default ``<pytest basetemp>/chaos-results.json``) and summed up in
    one line, printed and shown in the terminal summary.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import session_report
from tests.chaos.model import FaultResult
from tests.chaos.runner import Chaos
from tests.session_report import (  # the two hooks: pytest looks for them in this module
    on_failure,
    pytest_runtest_makereport,  # noqa: F401
    pytest_terminal_summary,  # noqa: F401
)
from tools.faults.network import remove_stale_cuts
from tools.zookeeper import java_available
from tools.zookeeper_target import ZkTarget

MakeChaos = Callable[..., Chaos]


@pytest.fixture(scope="session")
def zk_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ZkTarget]]:
    reason = java_available()
    targets: dict[str, ZkTarget] = {}
    remove_stale_cuts()  # firewall rules of an earlier run that was killed before its finally

    def get(kind: str) -> ZkTarget:
        if reason is not None:
            pytest.fail(f"the chaos suite needs a local ZooKeeper: {reason}", pytrace=False)
        target = targets.get(kind)
        if target is None:
            target = targets[kind] = ZkTarget(kind, tmp_path_factory.mktemp(f"chaos-zk-{kind}"))
            target.start()
        else:
            target.heal()
        return target

    yield get
    for target in targets.values():
        target.stop()


@pytest.fixture
def make_chaos(
    request: pytest.FixtureRequest, tmp_path: Path, zk_target: Callable[[str], ZkTarget]
) -> Iterator[MakeChaos]:
    made: list[Chaos] = []
    on_failure(
        request.node, lambda: itertools.chain.from_iterable(_sections(i, c) for i, c in enumerate(made, 1))
    )
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name).strip("_")[:60]

    with contextlib.ExitStack() as closing:

        def make(kind: str, **options: Any) -> Chaos:
            chaos = Chaos(
                tmp_path / f"chaos-{len(made) + 1}",
                zk_target(kind),
                election_path=f"/chaos/{name}-{uuid.uuid4().hex[:8]}",
                **options,
            )
            made.append(chaos)
            closing.callback(chaos.close)  # at teardown, even if it fails to start; last made first
            chaos.start()
            return chaos

        yield make


def _sections(index: int, chaos: Chaos) -> list[tuple[str, str]]:
    """What a failed test shows of its ``index``-th election: replicas' and servers' log tails."""
    tails = "\n".join(f"--- {s.address}:\n{s.log_tail(15)}" for s in chaos.zk.servers)
    return [
        (f"replicas of election {index} ({chaos.workdir})", chaos.cluster.report(40)),
        (f"ZooKeeper ({chaos.zk.describe()})", tails),
    ]


@pytest.fixture(scope="session")
def chaos_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str, FaultResult], None]]:
    collected: list[dict[str, Any]] = []

    def record(test: str, result: FaultResult) -> None:
        collected.append({"test": test, **result.to_json()})
        print(f"\n{result.line()}")

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    yield record
    if not collected:
        return
    path = Path(
        os.environ.get("ELECTION_CHAOS_RESULTS") or tmp_path_factory.getbasetemp() / "chaos-results.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"started_at": started, "results": collected}, indent=2) + "\n")
    session_report.summary_line(request.config, summary_line(collected) + f" -> {path}")


def summary_line(results: list[dict[str, Any]]) -> str:
    def worst(key: str) -> str:
        values = [(r[key], r) for r in results if r.get(key) is not None]
        if not values:
            return "-"
        value, r = max(values, key=lambda item: item[0])
        return f"{value:.3f}s ({r['fault']}/{r['zk']})" if value else f"{value:.3f}s"

    failed = [r for r in results if not r["ok"]]
    audited = [r for r in results if not r["audit"].startswith("n/a")]  # the exec share has no files
    clean = sum(1 for r in audited if r["audit"] == "clean")
    stale = sum(r["stale_writes"] for r in results)
    return (
        f"chaos: {len(results)} fault(s), {len(failed)} violated; "
        f"longest without a leader {worst('no_leader_s')}, "
        f"longest hand-over {worst('handover_s')}, "
        f"max overlap {worst('overlap_s')}, "
        f"stale writes {stale}, audits clean {clean}/{len(audited)}"
    )
