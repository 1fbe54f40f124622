"""End to end: the HTTP port as a load balancer's target (issue 10), on real processes.

A thousand idle connections to the leader and a thousand to a standby: both still answer
``/healthz``, neither process spends a thread per connection, and a graceful hand-over still
happens, after which ``/leader`` answers 200 on the successor and nothing (or 503) on the old
leader. Every wait polls a predicate against a generous deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from app.wiring import raise_open_files_limit
from tests.e2e.conftest import MakeCluster
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.replicas import Replica
from tools.waiting import wait_for

pytestmark = pytest.mark.e2e

STARTUP = 30.0
ANSWER = 15.0  # deadline for a probe to answer while the connections are held
HANDOVER = 15.0  # deadline for a successor to lead (expected: well under a second)
IDLE = 1000
# Threads an election process may run whatever its connections: the machine, kazoo's, signals,
# the HTTP selector and its few handlers, with room to spare. (A thread per connection: > IDLE.)
THREAD_BOUND = 40


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads: line for {pid}")


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port`` that send nothing."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def answers(replica: Replica, path: str) -> int | None:
    """The status code of ``path`` on ``replica``, None if nothing answers."""
    answer = replica.get(path)
    return None if answer is None else answer[0]


def test_a_thousand_idle_connections_neither_stop_probes_nor_delay_a_handover(
    zk_server: ZooKeeperEndpoint, election_path: str, make_cluster: MakeCluster
) -> None:
    raise_open_files_limit()  # 2,000 sockets in this process
    cluster = make_cluster(zk_server.address, election_path)
    cluster.start(2)
    leader = cluster.wait_for_sole_leader(STARTUP)
    standby = next(r for r in cluster.running if r is not leader)
    wait_for(lambda: answers(leader, "/leader") == 200, STARTUP, "/leader to answer 200 on the leader")
    assert answers(standby, "/leader") == 503

    held: list[socket.socket] = []
    try:
        held += open_idle(leader.port, IDLE)
        held += open_idle(standby.port, IDLE)
        for replica in (leader, standby):
            wait_for(
                lambda r=replica: answers(r, "/healthz") == 200, ANSWER, f"/healthz of {replica.identity}"
            )
            threads = threads_of(replica.pid)
            print(f"\n{replica.identity}: {threads} threads with {IDLE} idle connections")
            assert threads < THREAD_BOUND, f"{replica.identity} runs {threads} threads"

        signalled = time.monotonic()
        leader.send(signal.SIGTERM)
        successor = wait_for(
            lambda: standby if answers(standby, "/leader") == 200 else None,
            HANDOVER,
            f"{standby.identity} to lead with its work running",
        )
        print(f"/leader 200 on the successor {time.monotonic() - signalled:.3f}s after the SIGTERM")
        assert successor.state() == "Leader"
        assert answers(leader, "/leader") in (None, 503)  # stopping or gone
        assert leader.wait_exit(ANSWER) == 0
        assert answers(leader, "/leader") is None
        assert answers(successor, "/healthz") == 200
    finally:
        for sock in held:
            sock.close()


def test_leader_follows_the_command_with_exec(
    zk_server: ZooKeeperEndpoint, election_path: str, make_cluster: MakeCluster
) -> None:
    # With --exec, "its work runs" is the child being alive: when it dies, /leader turns 503 at
    # once (before the replica has resigned), and the replica that runs the next child answers 200.
    cluster = make_cluster(
        zk_server.address, election_path, zk_session_timeout="6s", exec="sleep 1000", exec_stop_timeout="1s"
    )
    cluster.start(2)
    leader = cluster.wait_for_sole_leader(STARTUP)
    standby = next(r for r in cluster.running if r is not leader)
    wait_for(lambda: answers(leader, "/leader") == 200, STARTUP, "/leader to answer 200 on the leader")
    assert answers(standby, "/leader") == 503
    status = leader.status()
    assert status is not None and status["work"]["running"], status
    os.kill(int(status["work"]["pid"]), signal.SIGKILL)

    wait_for(lambda: answers(leader, "/leader") == 503, HANDOVER, f"/leader of {leader.identity} to turn 503")
    wait_for(
        lambda: answers(standby, "/leader") == 200, HANDOVER, f"{standby.identity} to lead with its command"
    )
    assert answers(leader, "/leader") == 503
