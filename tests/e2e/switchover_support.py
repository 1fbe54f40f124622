"""The switchover tests' means: the ``election`` commands they run, how they start a queue in order,
and the election's ZooKeeper nodes read with a client of the test's own (:class:`Nodes`, the
``nodes`` fixture of ``tests/e2e/conftest.py``).

What "nobody else led" is checked against, in each test: the epochs (leader files, the ``history``
node) show exactly the terms the switchovers printed, and the other replicas' logs show no
transition to Leader.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from tools.cluster import Cluster
from tools.replicas import Replica, run_app
from tools.waiting import INTERVAL, wait_for

WAIT = 30.0
SESSION = 2.0  # --zk-session-timeout (the shared server, tickTime 200, grants it as asked)
HANDOVER_LINE = re.compile(
    r"(?P<old>\S+) \(epoch (?P<old_epoch>\d+)\) -> (?P<new>\S+) \(epoch (?P<new_epoch>\d+)\) "
    r"in (?P<ms>\d+(?:\.\d+)?) ms"
)
STOP_SECONDS = 0.3  # the heartbeat child beats on this long after SIGTERM
REASONS = {"graceful", "switchover", "resigned", "fenced", "expired", "work_exited"}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handover:
    """What ``election switchover`` printed on success."""

    old: str
    old_epoch: int
    new: str
    new_epoch: int
    seconds: float


def switchover(cluster: Cluster, *args: str) -> Handover:
    """``election switchover <args>``: it must exit 0 and print ``old (epoch E) -> new (epoch E2) in
    N ms``; returns what it printed."""
    done = cluster.cli("switchover", *args)
    assert done.returncode == 0, (
        f"election switchover {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    lines = done.stdout.strip().splitlines()
    match = HANDOVER_LINE.fullmatch(lines[-1].strip()) if lines else None
    assert match, f"election switchover {' '.join(args)} printed {done.stdout!r} (stderr {done.stderr!r})"
    handover = Handover(
        old=match["old"],
        old_epoch=int(match["old_epoch"]),
        new=match["new"],
        new_epoch=int(match["new_epoch"]),
        seconds=float(match["ms"]) / 1000.0,
    )
    assert handover.new_epoch > handover.old_epoch, handover
    return handover


def spawn_with(
    cluster: Cluster, identity: str, *flags: str, env: dict[str, str] | None = None, **overrides: str
) -> Replica:
    """:meth:`Cluster.spawn`, waiting until it serves."""
    replica = cluster.spawn(identity, *flags, env=env, **overrides)
    replica.wait_serving(WAIT)
    return replica


def spawn_attempter(cluster: Cluster, identity: str, *flags: str, **overrides: str) -> Replica:
    """Start a replica and wait until it waits as a connected Attempter: started one after another,
    replicas join the queue in the order they were started."""
    replica = spawn_with(cluster, identity, *flags, **overrides)
    wait_for(lambda: attempting(replica), WAIT, f"{identity} to wait as a connected attempter")
    return replica


def attempting(replica: Replica) -> bool:
    status = replica.status()
    return bool(
        status
        and status["state"] == "Attempter"
        and status["zookeeper"]["state"] == "connected"
        and status["leader"] is not None
    )


def leading_epoch(replica: Replica) -> int | None:
    """The epoch ``replica`` leads in, by its own /status; None if it does not lead."""
    status = replica.status()
    if status is None or status["state"] != "Leader" or status["leader"] is None:
        return None
    return int(status["leader"]["epoch"])


def start_leading_first(cluster: Cluster, first: str, *others: str, **overrides: str) -> int:
    """Start ``first``, wait until it leads, then the ``others`` one after another (so that the
    queue is in this order); returns the first term's epoch."""
    leader = spawn_with(cluster, first, **overrides)
    epoch = wait_for(lambda: leading_epoch(leader), WAIT, f"{first} to lead")
    for identity in others:
        spawn_attempter(cluster, identity, **overrides)
    return epoch


def became_leader(replica: Replica) -> int:
    """How many times ``replica``'s log shows it entering Leader."""
    return sum(1 for t in replica.transitions() if t.get("to") == "Leader")


def file_epochs(cluster: Cluster) -> list[int]:
    """The epochs of the leader files in ``file-dir``, in write order, each once."""
    return list(dict.fromkeys(f.epoch for f in cluster.leader_files()))


def fence_epoch(cluster: Cluster) -> int:
    """The epoch the fence record (``.election-fence``) holds: the highest that has written."""
    return int(json.loads((cluster.file_dir / ".election-fence").read_text())["epoch"])


def run_audit(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """``election audit`` of the cluster's ``file-dir``, at its ``--storage-capacity``."""
    capacity = cluster.settings["storage-capacity"]
    return run_app(
        "audit", f"--file-dir={cluster.file_dir}", f"--storage-capacity={capacity}", env=cluster.env
    )


def metric(replica: Replica, name: str) -> float | None:
    return (replica.metrics() or {}).get(name)


def holds(predicate: Callable[[], bool], seconds: float, message: str) -> None:
    """Assert that ``predicate`` stays true, checked every few ms, for ``seconds``: for claims that
    something does *not* happen, where there is no event to wait for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(INTERVAL)


class Nodes:
    """The election's ZooKeeper nodes, read with a client of the test's own."""

    def __init__(self, client: KazooClient, election_path: str) -> None:
        self.client = client
        self.path = election_path

    def leader_epoch(self) -> int | None:
        stat = self.client.exists(f"{self.path}/leader")
        return None if stat is None else int(stat.czxid)

    def leader(self) -> tuple[int, str] | None:
        """(epoch, identity) of the leader node; None if there is none."""
        try:
            data, stat = self.client.get(f"{self.path}/leader")
        except NoNodeError:
            return None
        return int(stat.czxid), str(json.loads(data or b"{}").get("identity", ""))

    def epochs(self) -> list[int]:
        """The epochs of the history's terms, oldest first."""
        return [int(t["epoch"]) for t in self.history()]

    def history(self) -> list[dict[str, Any]]:
        """The ``history`` node's terms, oldest first ([] if the node is missing or empty)."""
        if self.client.exists(f"{self.path}/history") is None:
            return []
        data, _stat = self.client.get(f"{self.path}/history")
        terms = json.loads(data or b"{}").get("terms", [])
        assert isinstance(terms, list), terms
        return terms

    def term(self, epoch: int) -> dict[str, Any] | None:
        return next((t for t in self.history() if int(t["epoch"]) == epoch), None)

    def switchover(self) -> dict[str, Any]:
        """The ``switchover`` node's data: ``{}`` when idle."""
        data, _stat = self.client.get(f"{self.path}/switchover")
        value = json.loads(data or b"{}")
        assert isinstance(value, dict), value
        return value

    def request(self, **fields: Any) -> str:
        """Write a request into the ``switchover`` node, as ``election switchover`` would; returns
        its id."""
        request = {
            "id": uuid.uuid4().hex,
            "requested_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "expires_in": 30.0,
            **fields,
        }
        self.client.set(f"{self.path}/switchover", json.dumps(request).encode())
        return str(request["id"])


def cluster_of(
    make_cluster: Callable[..., Cluster], zk_server: Any, election_path: str, **settings: str
) -> Cluster:
    return make_cluster(
        zk_server.address,
        election_path,
        zk_session_timeout=f"{SESSION:g}s",
        failover_backoff_max="200ms",
        **settings,
    )
