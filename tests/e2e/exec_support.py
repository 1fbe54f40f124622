"""The ``--exec`` tests' means: clusters whose leaders run the heartbeat child, and readers of its beats.

Three replicas run ``tests/e2e/heartbeat_child.py`` under ``--exec``: each child (and grandchild)
writes a heartbeat every 10 ms on ``CLOCK_BOOTTIME``, one clock for every process of the machine.
:func:`wait_term` waits for a term whose child has beaten :data:`BEATS` times; :func:`assert_no_overlap`
is the issue's rule: every process of a term wrote its last beat before any process of the next term
wrote its first (:func:`tests.e2e.heartbeat_child.overlaps`). A :class:`Reaper` (the ``reaper``
fixture of ``tests/e2e/conftest.py``) leaves no child behind, even of a SIGKILLed replica; a
:class:`ZkPath` is one replica's own path to ZooKeeper, which a test can cut.

The arithmetic these settings must satisfy (docs, issue 10): lease L = 2/3 S of the granted session
S; grace G <= L - 2P - K = 4/9 S - 0.25 s. With S = 2 s (the shared server, tickTime 200) G may be at
most 0.64 s: these tests use 0.5 s.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.heartbeat_child import Term, overlaps, read_processes, terms
from tools.cluster import Cluster
from tools.faults.network import LoopbackCut, iptables_unavailable
from tools.relay import Relay
from tools.replicas import Replica
from tools.waiting import wait_for

CHILD = Path(__file__).with_name("heartbeat_child.py")
WAIT = 30.0
SESSION = 2.0  # --zk-session-timeout: the shared server (tickTime 200) grants it as asked
LEASE = SESSION * 2 / 3
STOP_TIMEOUT = 0.5  # --exec-stop-timeout: within 4/9 x 2 s - 0.25 s = 0.64 s
EXEC_SETTINGS = {
    "zk_session_timeout": f"{SESSION:g}s",
    "exec_stop_timeout": f"{STOP_TIMEOUT * 1000:g}ms",
    "failover_backoff_max": "200ms",
}
BEATS = 3  # beats a child must have written before a term counts as running
ROUNDS = 3  # hand-overs per kind of fault


def child_command(beat_dir: Path, *options: str) -> str:
    """The ``--exec`` value that runs the heartbeat child with ``options``."""
    return shlex.join([sys.executable, str(CHILD), "--dir", str(beat_dir), *options])


class Reaper:
    """Clusters of one test and what they started. At teardown every replica is SIGKILLed first (so
    that none starts a command again), then every process group a replica logged starting
    (``work_started``) that still runs one of our commands: a SIGKILLed replica leaves a grandchild
    behind (the gap ``test_a_shell_grandchild_does_not_outlive...`` records)."""

    def __init__(self, make_cluster: Callable[..., Cluster]) -> None:
        self._make_cluster = make_cluster
        self.clusters: list[Cluster] = []

    def cluster(self, zk_address: str, election_path: str, **settings: str) -> Cluster:
        cluster = self._make_cluster(zk_address, election_path, **{**EXEC_SETTINGS, **settings})
        self.clusters.append(cluster)
        return cluster

    def reap(self) -> None:
        groups: set[int] = set()
        for cluster in self.clusters:
            cluster.kill_all()
            for replica in cluster.replicas:
                groups.update(int(r["pid"]) for r in work_events(replica, "work_started") if r.get("pid"))
        for pgid in groups:
            if any(_ours(pid) for pid in group_members(pgid)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)


def _ours(pid: int) -> bool:
    """Whether ``pid`` runs one of this module's commands (the heartbeat child, ``sleep 1000``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(CHILD).encode() in argv or argv[:2] == [b"sleep", b"1000"]


def exec_cluster(
    reaper: Reaper, zk_address: str, election_path: str, *child_options: str, **settings: str
) -> tuple[Cluster, Path]:
    """A cluster whose replicas run the heartbeat child; returns it and the children's directory."""
    cluster = reaper.cluster(zk_address, election_path, **settings)
    beat_dir = cluster.workdir / "beats"
    cluster.settings["exec"] = child_command(beat_dir, *child_options)
    return cluster, beat_dir


def running_term(beat_dir: Path, identity: str | None = None, after: int | None = None) -> Term | None:
    """The newest term (of ``identity``, newer than epoch ``after``) whose child has beaten
    :data:`BEATS` times, if any."""
    found = terms(read_processes(beat_dir))
    if not found:
        return None
    newest = found[-1]
    if identity is not None and newest.identity != identity:
        return None
    if after is not None and (newest.epoch is None or newest.epoch <= after):
        return None
    return newest if len(newest.child.beats) >= BEATS else None


def wait_term(beat_dir: Path, identity: str | None = None, after: int | None = None) -> Term:
    what = f"a child of {identity or 'a leader'}" + (f" in a term after {after}" if after else "")
    return wait_for(lambda: running_term(beat_dir, identity, after), WAIT, f"{what} to beat {BEATS} times")


def refreshed(beat_dir: Path, term: Term) -> Term:
    """``term`` as its files say now (a :class:`Term` is a snapshot)."""
    key = (term.epoch, term.identity, term.child.pgid)
    return next(t for t in terms(read_processes(beat_dir)) if (t.epoch, t.identity, t.child.pgid) == key)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that is not a zombie (a zombie runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def shell_of_a_leader(cluster: Cluster, other_than: Replica | None = None) -> tuple[Replica, int] | None:
    """A running replica (not ``other_than``) that leads and whose command, a shell, runs with its
    background ``sleep``: (replica, the command's process group). ``other_than`` may be cut off: the
    others need not agree on anything."""
    for replica in cluster.running:
        if replica is other_than:
            continue
        status = replica.status() or {}
        work = status.get("work") or {}
        if status.get("state") == "Leader" and work.get("running") and work.get("pid"):
            pgid = int(work["pid"])
            if len(group_members(pgid)) >= 2:  # sh and its sleep
                return replica, pgid
    return None


def assert_no_overlap(beat_dir: Path, at_least: int) -> list[Term]:
    found = terms(read_processes(beat_dir))
    problems = overlaps(read_processes(beat_dir))
    assert not problems, "children of two terms ran at once:\n  " + "\n  ".join(problems)
    assert len(found) >= at_least, f"{len(found)} terms, expected at least {at_least}"
    return found


def restart(cluster: Cluster, replica: Replica, **overrides: str) -> Replica:
    """Start ``replica``'s identity again (as an orchestrator would) and wait until it serves."""
    again = cluster.spawn(replica.identity, **overrides)
    again.wait_serving(WAIT)
    return again


def work_events(replica: Replica, event: str) -> list[dict[str, Any]]:
    return [r for r in replica.log_records() if r.get("event") == event]


# --------------------------------------------------------------------------------------------------
# one replica's path to ZooKeeper, which a test can cut
# --------------------------------------------------------------------------------------------------


class ZkPath:
    """A relay of one replica's own to a ZooKeeper server (:class:`tools.relay.Relay`). :meth:`cut`
    is a partition: as root, iptables drops every packet of the relay's port
    (:class:`tools.faults.network.LoopbackCut`); otherwise the relay black-holes the bytes (the
    client hears silence, the server stops hearing pings)."""

    def __init__(self, target: str) -> None:
        self._relay = Relay(target)
        self.address = self._relay.address
        self._firewall = LoopbackCut([self._relay.port]) if iptables_unavailable() is None else None

    def cut(self) -> None:
        if self._firewall is not None:
            self._firewall.apply()
        else:
            self._relay.cut()

    def heal(self) -> None:
        if self._firewall is not None:
            self._firewall.remove()
        else:
            self._relay.heal()

    def close(self) -> None:
        self.heal()
        self._relay.close()


class ZkPaths(dict[str, ZkPath]):
    """identity -> that replica's own cuttable path to ``target`` (made on first use)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def __missing__(self, identity: str) -> ZkPath:
        path = self[identity] = ZkPath(self.target)
        return path


def spawn_through(cluster: Cluster, paths: dict[str, ZkPath], identity: str, **overrides: str) -> Replica:
    replica = cluster.spawn(identity, zk_servers=paths[identity].address, **overrides)
    replica.wait_serving(WAIT)
    return replica


def cut_off_round(cluster: Cluster, paths: dict[str, ZkPath], beat_dir: Path) -> tuple[Term, Term]:
    """Cut the leader off from ZooKeeper until another replica's child runs; heal; wait until the
    cut-off replica is back as a connected attempter. Returns (old term, new term)."""
    leader = cluster.wait_for_sole_leader(WAIT)
    old = wait_term(beat_dir, leader.identity)
    paths[leader.identity].cut()
    try:
        new = wait_term(beat_dir, after=old.epoch)
    finally:
        paths[leader.identity].heal()

    def rejoined() -> bool:
        status = leader.status()
        return bool(status and status["state"] == "Attempter" and status["zookeeper"]["state"] == "connected")

    wait_for(rejoined, WAIT, f"{leader.identity} to rejoin as an attempter")
    assert leader.alive, f"{leader.identity} exited after it was cut off"
    return refreshed(beat_dir, old), new


def graceful_round(cluster: Cluster, beat_dir: Path) -> tuple[Term, Term, Replica]:
    """SIGTERM the leader (it must exit 0), wait for the next term's child, start the stopped
    replica again. Returns (old term, new term, the stopped replica)."""
    leader = cluster.wait_for_sole_leader(WAIT)
    old = wait_term(beat_dir, leader.identity)
    leader.send(signal.SIGTERM)
    new = wait_term(beat_dir, after=old.epoch)
    assert leader.wait_exit(WAIT) == 0, f"{leader.identity} did not exit 0 after SIGTERM"
    return refreshed(beat_dir, old), new, leader
