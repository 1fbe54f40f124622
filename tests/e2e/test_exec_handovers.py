"""Issue 10's ``--exec``, proved on real replicas, a real ZooKeeper and real children: hand-overs.

Exactly one term of children at a time over graceful hand-overs, SIGKILLs of the leader and a leader
cut off from ZooKeeper (the rule and the arithmetic: :mod:`tests.e2e.exec_support`);
``ELECTION_EPOCH`` is the leader node's czxid; a child that exits at once does not spin leadership
faster than the backoff allows. How children are stopped: ``test_exec_stopping.py``.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from typing import Any

import pytest
from kazoo.client import KazooClient

from tests.e2e.exec_support import (
    LEASE,
    ROUNDS,
    WAIT,
    Reaper,
    ZkPaths,
    alive,
    assert_no_overlap,
    cut_off_round,
    exec_cluster,
    graceful_round,
    restart,
    spawn_through,
    wait_term,
)
from tests.e2e.heartbeat_child import read_processes
from tools.waiting import wait_for

pytestmark = pytest.mark.e2e

# --------------------------------------------------------------------------------------------------
# exactly one child at any time
# --------------------------------------------------------------------------------------------------


def test_one_term_of_children_at_a_time_over_graceful_handovers(
    zk_server: Any, reaper: Reaper, election_path: str
) -> None:
    """SIGTERM of the leader, several rounds: its child (and the child's grandchild) got SIGTERM and
    exited by itself, and wrote its last beat before the successor's child wrote its first."""
    cluster, beat_dir = exec_cluster(reaper, zk_server.address, election_path, "--grandchild")
    cluster.start(3)
    for _ in range(ROUNDS):
        old, _new, stopped = graceful_round(cluster, beat_dir)
        for process in old.processes:
            assert process.terms and process.exit_code == 0, (
                f"{process.describe()} was not stopped by SIGTERM (terms {process.terms}, exit "
                f"{process.exit_code})"
            )
            assert not alive(process.pid), f"{process.describe()} is still running"
        assert len(old.processes) == 2, f"expected a child and a grandchild: {old.processes}"
        restart(cluster, stopped)
    assert_no_overlap(beat_dir, ROUNDS + 1)


def test_one_child_at_a_time_when_the_leader_is_killed(
    zk_server: Any, reaper: Reaper, election_path: str
) -> None:
    """SIGKILL of the leader, several rounds: its child dies with it (``PR_SET_PDEATHSIG``) at once,
    long before the session expires and a successor's child starts."""
    cluster, beat_dir = exec_cluster(reaper, zk_server.address, election_path)
    cluster.start(3)
    for _ in range(ROUNDS):
        leader = cluster.wait_for_sole_leader(WAIT)
        old = wait_term(beat_dir, leader.identity)
        killed_at = leader.send(signal.SIGKILL)
        leader.wait_exit(WAIT)
        wait_for(lambda old=old: not alive(old.child.pid), WAIT, "the killed leader's child to die")
        wait_term(beat_dir, after=old.epoch)
        dead = read_processes(beat_dir)
        child = next(p for p in dead if p.path == old.child.path)
        assert child.last_wall - killed_at < 1.0, (
            f"the child beat {child.last_wall - killed_at:.3f}s after its election was SIGKILLed"
        )
        restart(cluster, leader)
    assert_no_overlap(beat_dir, ROUNDS + 1)


def test_one_term_of_children_at_a_time_when_the_leader_is_cut_off(
    zk_server: Any, reaper: Reaper, election_path: str, zk_paths: ZkPaths
) -> None:
    """The leader's path to ZooKeeper is cut (a partition) until another replica's child runs,
    several rounds: the cut-off leader stopped its child and grandchild before its lease could run
    out, hence before the server expired its session and a successor's child started; and it goes
    on as an attempter once the path heals."""
    cluster, beat_dir = exec_cluster(reaper, zk_server.address, election_path, "--grandchild")
    for index in range(3):
        spawn_through(cluster, zk_paths, f"replica-{index + 1}")
    for _ in range(ROUNDS):
        old, new = cut_off_round(cluster, zk_paths, beat_dir)
        for process in old.processes:
            assert not alive(process.pid), f"{process.describe()} is still running"
            assert process.last < new.first
    assert_no_overlap(beat_dir, ROUNDS + 1)


# --------------------------------------------------------------------------------------------------
# the fencing token
# --------------------------------------------------------------------------------------------------


def test_the_childs_epoch_is_the_leader_nodes_czxid_and_grows_with_every_term(
    zk_server: Any, reaper: Reaper, election_path: str
) -> None:
    """Each term's child is given ``ELECTION_EPOCH`` = the czxid of the leader node (read here by a
    client of our own while the child runs), the replica's identity, the election path and the
    lease; the epoch grows from term to term."""
    cluster, beat_dir = exec_cluster(reaper, zk_server.address, election_path)
    cluster.start(3)
    client = KazooClient(hosts=zk_server.address, timeout=10.0)
    client.start(timeout=WAIT)
    try:
        seen: list[tuple[int, int]] = []  # (child's epoch, czxid)
        for _ in range(ROUNDS + 1):
            leader = cluster.wait_for_sole_leader(WAIT)
            term = wait_term(beat_dir, leader.identity)
            _data, stat = client.get(f"{election_path}/leader")
            child = term.child
            assert (child.identity, child.election_path) == (leader.identity, election_path)
            assert child.lease is not None and math.isclose(child.lease, LEASE, abs_tol=0.01), child.lease
            status = leader.status() or {}
            assert (status.get("work") or {}).get("epoch") == child.epoch, status.get("work")
            seen.append((child.epoch or -1, int(stat.czxid)))
            leader.send(signal.SIGTERM)
            assert leader.wait_exit(WAIT) == 0
            restart(cluster, leader)
    finally:
        client.stop()
        client.close()
    assert all(epoch == czxid for epoch, czxid in seen), f"(ELECTION_EPOCH, czxid) per term: {seen}"
    epochs = [epoch for epoch, _ in seen]
    assert epochs == sorted(set(epochs)), f"epochs do not grow: {epochs}"


# --------------------------------------------------------------------------------------------------
# a child that exits by itself
# --------------------------------------------------------------------------------------------------

SPIN_WINDOW = 12.0  # seconds of terms counted


def backoff(k: int) -> float:
    """The documented wait after a replica's k-th consecutive exit of its child: min(2^(k-1), 60) s."""
    return min(2.0 ** (k - 1), 60.0)


def most_terms(window: float) -> int:
    """The most terms one replica can begin within ``window`` seconds of its first, when every run
    ends in an exit: the n-th start comes at least backoff(1) + ... + backoff(n-1) after the first."""
    n, waited = 1, 0.0
    while waited + backoff(n) <= window:
        waited += backoff(n)
        n += 1
    return n


def test_a_child_that_exits_at_once_does_not_spin_leadership(
    zk_server: Any, reaper: Reaper, election_path: str
) -> None:
    """The child exits 3 at once, every time. Each exit is counted, the replica resigns and comes
    back after min(2^(k-1) s, 60 s) (the k-th consecutive exit): within the window, no replica begins
    more terms than that allows, the gaps between one replica's terms are at least the backoffs, and
    every replica does come back (leadership moves on, nobody exits)."""
    cluster, beat_dir = exec_cluster(reaper, zk_server.address, election_path, "--exit", "3")
    cluster.start(3)
    first = wait_for(lambda: read_processes(beat_dir), WAIT, "a first child")[0].started
    wait_for(
        lambda: time.clock_gettime(time.CLOCK_BOOTTIME) > first + SPIN_WINDOW + 0.5,
        SPIN_WINDOW + WAIT,
        "the window to pass",
        interval=0.1,
    )
    assert all(r.alive for r in cluster.replicas), f"a replica exited: {cluster.replicas}"
    started: dict[str, list[float]] = {}
    for process in read_processes(beat_dir):
        if process.started <= first + SPIN_WINDOW:
            assert process.exit_code == 3, f"{process.describe()} did not exit by itself"
            started.setdefault(process.identity or "?", []).append(process.started)
    limit = most_terms(SPIN_WINDOW)
    counts = {identity: len(times) for identity, times in started.items()}
    assert set(counts) == {r.identity for r in cluster.replicas}, f"terms per replica: {counts}"
    assert all(2 <= n <= limit for n in counts.values()), (
        f"terms per replica in {SPIN_WINDOW:g} s: {counts} (each must come back, and at most {limit})"
    )
    for identity, times in started.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        short = [(k, gap) for k, gap in enumerate(gaps, start=1) if gap < backoff(k) - 0.05]
        assert not short, f"{identity} came back sooner than its backoff: (exit k, gap s) {short}"
    exits = sum((r.metrics() or {}).get('election_work_exits_total{code="3"}', 0.0) for r in cluster.replicas)
    assert exits >= sum(counts.values()) - len(counts), f"election_work_exits_total{{code=3}} = {exits}"
