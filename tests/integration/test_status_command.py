"""`election status` against a real ZooKeeper: one-shot exit statuses, and --watch following changes."""

from __future__ import annotations

import json
import queue
import subprocess
import threading

import pytest

from tests.app_cli import app_command, run_app
from tests.integration.conftest import NewReplica
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.waiting import wait_for

pytestmark = pytest.mark.integration


def status(address: str, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_app("status", "--zk-servers", address, "--election-path", path, *extra, timeout=60)


def test_status_exits_1_when_nobody_leads_and_0_with_the_leader_named(
    zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica
) -> None:
    a = new_replica("alpha")
    new_replica("beta")
    nobody = status(zk_server.address, election_path, "--json")
    assert nobody.returncode == 1
    view = json.loads(nobody.stdout)
    assert view["leader"] is None
    assert [m["identity"] for m in view["members"]] == ["alpha", "beta"]

    node = a.create_leader({"identity": "alpha", "acquired_at": "2026-01-01T00:00:00.000000Z"})
    assert node is not None
    led = status(zk_server.address, election_path)
    assert led.returncode == 0
    assert f"alpha  epoch {node.epoch}" in led.stdout
    assert "alpha (leader), beta" in led.stdout


def test_watch_prints_a_new_view_when_the_leader_changes(
    zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica
) -> None:
    a = new_replica("alpha")
    b = new_replica("beta")
    assert a.create_leader({"identity": "alpha"}) is not None
    proc = subprocess.Popen(
        app_command("status", "--zk-servers", zk_server.address, "--election-path", election_path,
                    "--watch", "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True)
    reader.start()
    try:
        first = json.loads(lines.get(timeout=30))
        assert first["leader"]["identity"] == "alpha"
        a.close()  # the leader leaves; beta takes over
        wait_for(lambda: b.create_leader({"identity": "beta"}) is not None, 10, "beta to lead")
        seen = []
        while not seen or seen[-1]["leader"] is None or seen[-1]["leader"]["identity"] != "beta":
            seen.append(json.loads(lines.get(timeout=30)))
        assert seen[-1]["leader"]["identity"] == "beta"
        assert [m["identity"] for m in seen[-1]["members"]] == ["beta"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
