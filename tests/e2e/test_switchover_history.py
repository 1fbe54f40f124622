"""Issue 11's operator controls, proved on real replicas and a real ZooKeeper: why terms end.

The history (``<election-path>/history``, ``election status --history``, ``/status``) tells why
each term ended: a switchover, a graceful stop, a crash, a resignation, a command that exited.
Under ``--exec`` the old leader's command is gone before the new leader's starts (the heartbeat
child of :mod:`tests.e2e.heartbeat_child` and its overlap rule). The requests themselves:
``test_switchover.py``.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MakeCluster
from tests.e2e.exec_support import Reaper, alive, assert_no_overlap, exec_cluster, refreshed, wait_term
from tests.e2e.switchover_support import (
    REASONS,
    STOP_SECONDS,
    WAIT,
    Nodes,
    attempting,
    cluster_of,
    leading_epoch,
    metric,
    spawn_attempter,
    start_leading_first,
    switchover,
)
from tools.replicas import Replica
from tools.waiting import wait_for

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------------------------------
# the history
# --------------------------------------------------------------------------------------------------


def break_file_dir(directory: Path) -> None:
    """Make ``directory`` unusable even for root: a regular file where the directory was (every
    write under it fails with ENOTDIR). Renamed away first, in one step: the leader writing into it
    meanwhile would make a removal in place fail with "Directory not empty" (seen in CI)."""
    gone = directory.with_name(directory.name + ".gone")
    directory.rename(gone)
    directory.write_text("not a directory any more\n")
    shutil.rmtree(gone, ignore_errors=True)


def test_the_history_tells_a_switchover_a_graceful_stop_a_crash_and_a_resignation(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """r1 hands over to r2 (``switchover``); r2 gets SIGTERM (``graceful``); r3 is SIGKILLed
    (``expired``: its successor closes the term); r4, whose file-dir becomes a regular file under it
    with ``--max-write-failures 1``, resigns (``resigned``). The history node, ``election status
    --history`` (JSON and text) and the leader's ``/status`` give each term that reason, and the
    new leader after each counts it in ``election_leadership_changes_total``."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    start_leading_first(cluster, "r1", "r2", "r3")
    own_dir = cluster.workdir / "r4-files"
    spawn_attempter(cluster, "r4", file_dir=str(own_dir), max_write_failures="1")
    expected: dict[int, str] = {}  # epoch -> the reason its term must have ended for

    def lead(identity: str) -> int:
        """Make ``identity`` the leader by a switchover if it does not lead; its epoch."""
        now = wait_for(nodes.leader, WAIT, "a leader node")
        if now[1] == identity:
            epoch = now[0]
        else:
            handover = switchover(cluster, "--to", identity)
            expected[handover.old_epoch] = "switchover"
            epoch = handover.new_epoch
        replica = cluster.by_identity(identity)
        wait_for(lambda: leading_epoch(replica) == epoch, WAIT, f"{identity} to say it leads")
        return epoch

    def next_leader(after: int) -> Replica:
        return wait_for(
            lambda: next((r for r in cluster.running if (leading_epoch(r) or 0) > after), None),
            WAIT,
            f"a leader after epoch {after}",
        )

    def counted(replica: Replica, reason: str) -> None:
        label = reason.replace(" ", "_")
        wait_for(
            lambda: (metric(replica, f'election_leadership_changes_total{{reason="{label}"}}') or 0) >= 1,
            WAIT,
            f"{replica.identity} to count a change for {reason!r}",
        )

    # a switchover
    lead("r1")
    lead("r2")
    counted(cluster.by_identity("r2"), "switchover")

    # a graceful stop
    stopped = cluster.by_identity("r2")
    epoch = lead("r2")
    stopped.send(signal.SIGTERM)
    assert stopped.wait_exit(WAIT) == 0
    expected[epoch] = "graceful"
    counted(next_leader(epoch), "graceful")
    spawn_attempter(cluster, "r2")

    # a crash
    epoch = lead("r3")
    crashed = cluster.by_identity("r3")
    crashed.send(signal.SIGKILL)
    crashed.wait_exit(WAIT)
    expected[epoch] = "expired"
    counted(next_leader(epoch), "expired")
    spawn_attempter(cluster, "r3")

    # a resignation
    epoch = lead("r4")
    r4 = cluster.by_identity("r4")
    wait_for(lambda: any(own_dir.glob("leader-*.json")), WAIT, "r4's first file")
    break_file_dir(own_dir)
    successor = next_leader(epoch)
    expected[epoch] = "resigned"
    assert successor is not r4, "r4 led again with a broken file-dir"
    counted(successor, "resigned")
    r4.send(signal.SIGTERM)
    r4.wait_exit(WAIT)

    def reasons(terms: list[dict[str, Any]]) -> dict[int, str | None]:
        return {int(t["epoch"]): t.get("reason") for t in terms if int(t["epoch"]) in expected}

    def all_recorded() -> dict[int, str | None] | None:
        found = reasons(nodes.history())
        return found if len(found) == len(expected) else None

    recorded = wait_for(all_recorded, WAIT, "every term in the history")
    assert recorded == expected, f"reasons by epoch: recorded {recorded}, expected {expected}"
    assert all(t["reason"] in REASONS for t in nodes.history() if t.get("ended")), nodes.history()
    for epoch, reason in expected.items():
        term = nodes.term(epoch)
        assert term is not None and term["began"], term
        if reason != "expired":  # an expired term's end may be unknown (None)
            assert term["ended"] and term["ended"] >= term["began"], term

    done = cluster.cli("status", "--history", "--json")
    assert done.returncode == 0, done
    view = json.loads(done.stdout.strip().splitlines()[0])
    assert reasons(view["history"]) == expected, view["history"]
    table = cluster.cli("status", "--history")
    assert table.returncode == 0, table
    for epoch, reason in expected.items():
        row = next((line for line in table.stdout.splitlines() if line.split()[:1] == [str(epoch)]), None)
        assert row is not None and reason in row, f"no row for epoch {epoch} ({reason}):\n{table.stdout}"
    leader = cluster.wait_for_sole_leader(WAIT)
    wait_for(
        lambda: reasons((leader.status() or {}).get("history") or []) == expected,
        WAIT,
        f"{leader.identity}'s /status history to show every reason",
    )


# --------------------------------------------------------------------------------------------------
# --exec
# --------------------------------------------------------------------------------------------------


def test_a_switchover_stops_the_old_leaders_command_before_the_new_one_starts(
    zk_server: Any, reaper: Reaper, election_path: str, nodes: Nodes
) -> None:
    """Three replicas run the heartbeat child (with a grandchild) under ``--exec``; each child beats
    on for 0.3 s after SIGTERM (within the 0.5 s ``--exec-stop-timeout``), so that a leader node
    released before its command is gone shows as an overlap. Five switchovers to varying targets:
    each time the old leader's child and grandchild got SIGTERM, exited 0 by themselves and wrote
    their last beat before the target's child wrote its first, in the epoch the switchover printed;
    the old leader goes on as a candidate."""
    cluster, beat_dir = exec_cluster(
        reaper, zk_server.address, election_path, "--grandchild", "--stop-seconds", f"{STOP_SECONDS:g}"
    )
    start_leading_first(cluster, "r1", "r2", "r3")
    for target in ("r3", "r2", "r1", "r2", "r3"):
        leader = cluster.wait_for_sole_leader(WAIT)
        old = wait_term(beat_dir, leader.identity)
        handover = switchover(cluster, "--to", target)
        assert (handover.old, handover.old_epoch, handover.new) == (leader.identity, old.epoch, target)
        new = wait_term(beat_dir, target, after=old.epoch)
        assert new.epoch == handover.new_epoch, (new.epoch, handover)
        for process in old.processes:  # gone by now if all is well; else let its last beat land
            wait_for(lambda p=process: not alive(p.pid), WAIT, f"{process.describe()} to be gone")
        old = refreshed(beat_dir, old)
        assert len(old.processes) == 2, f"expected a child and a grandchild: {old.processes}"
        for process in old.processes:
            assert process.last < new.first, (
                f"{process.describe()} beat {process.last - new.first:.3f}s after {target}'s child began"
            )
            assert process.terms and process.exit_code == 0, (
                f"{process.describe()} was not stopped by SIGTERM (terms {process.terms}, exit "
                f"{process.exit_code})"
            )
        assert leader.alive
        wait_for(lambda leader=leader: attempting(leader), WAIT, f"{leader.identity} to wait as a candidate")
    assert_no_overlap(beat_dir, 6)
    wait_for(lambda: len(nodes.history()) == 6, WAIT, "the history to hold the six terms")
    assert [t["reason"] for t in nodes.history()[:-1]] == ["switchover"] * 5, nodes.history()


def test_a_command_that_exits_ends_its_term_as_work_exited(
    zk_server: Any, reaper: Reaper, election_path: str, nodes: Nodes
) -> None:
    """Under ``--exec`` a command that exits by itself (status 3, after a few beats) makes its
    leader resign: the history records those terms as "work_exited", and the next leader counts
    ``election_leadership_changes_total{reason="work_exited"}``."""
    cluster = reaper.cluster(zk_server.address, election_path, exec="sh -c 'sleep 0.3; exit 3'")
    cluster.start(2)

    def ended_terms() -> list[dict[str, Any]] | None:
        ended = [t for t in nodes.history() if t.get("reason") is not None]
        return ended if len(ended) >= 2 else None

    closed = wait_for(ended_terms, WAIT, "two terms to end")[:2]
    assert [t["reason"] for t in closed] == ["work_exited", "work_exited"], nodes.history()
    wait_for(
        lambda: any(
            (metric(r, 'election_leadership_changes_total{reason="work_exited"}') or 0) >= 1
            for r in cluster.running
        ),
        WAIT,
        'a leader to count a change for "work_exited"',
    )
