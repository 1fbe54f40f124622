"""Issue 11's operator controls, proved on real replicas and a real ZooKeeper: the requests.

``election switchover`` moves leadership to a named replica (or the next in the queue) without
anyone else taking over in between, the old leader staying on as a candidate; a request aimed at a
leader that is gone does nothing; ``--no-lead`` replicas never lead, whatever happens to the
candidates. What "nobody else led" is checked against: :mod:`tests.e2e.switchover_support`. Why
terms end: ``test_switchover_history.py``.
"""

from __future__ import annotations

import itertools
import re
import signal
from typing import Any

import pytest

from tests.e2e.checks import check_terms_do_not_interleave
from tests.e2e.conftest import Handovers, MakeCluster
from tests.e2e.switchover_support import (
    SESSION,
    WAIT,
    Nodes,
    attempting,
    became_leader,
    cluster_of,
    fence_epoch,
    file_epochs,
    holds,
    leading_epoch,
    metric,
    run_audit,
    spawn_attempter,
    spawn_with,
    start_leading_first,
    switchover,
)
from tools.leader_files import parse_time
from tools.waiting import wait_for

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------------------------------
# switchover --to
# --------------------------------------------------------------------------------------------------


def test_switchover_to_r2_of_five_hands_over_to_r2_alone_and_r1_stays_a_candidate(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """Five replicas, r1 leads and r2 is last in the queue, ``switchover --to r2``: r2 leads next in
    exactly one new term (the files and the history show r1's epoch, then r2's, nothing between), no
    other replica's log shows leadership, r1 did not exit and waits as a candidate again, r1's term
    ended for "switchover" and r2 counts it. Then a switchover without ``--to`` goes to the next in
    the queue (r3: r1 re-joined at the tail), and one ``--to r1`` brings r1 back (it is a
    candidate)."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    # r2 joins the queue last: the head (r3) and the others must let it pass.
    first = start_leading_first(cluster, "r1", "r3", "r4", "r5", "r2")
    r1, r2 = cluster.by_identity("r1"), cluster.by_identity("r2")
    wait_for(lambda: file_epochs(cluster) == [first], WAIT, "r1's first file")

    handover = switchover(cluster, "--to", "r2")
    assert (handover.old, handover.old_epoch, handover.new) == ("r1", first, "r2"), handover
    second = handover.new_epoch
    assert nodes.leader_epoch() == second
    wait_for(lambda: leading_epoch(r2) == second, WAIT, "r2 to say it leads")
    wait_for(lambda: second in file_epochs(cluster), WAIT, "r2's first file")
    wait_for(lambda: nodes.epochs() == [first, second], WAIT, f"the history to be {[first, second]}")

    assert file_epochs(cluster) == [first, second], f"terms in file-dir: {file_epochs(cluster)}"
    assert fence_epoch(cluster) == second
    check_terms_do_not_interleave(cluster.leader_files())
    history = [(int(t["epoch"]), t["identity"]) for t in nodes.history()]
    assert history == [(first, "r1"), (second, "r2")], f"history: {nodes.history()}"
    ended = nodes.term(first)
    assert ended is not None and ended["reason"] == "switchover" and ended["ended"], ended
    for other in ("r3", "r4", "r5"):
        assert became_leader(cluster.by_identity(other)) == 0, f"{other} led: {cluster.report()}"
    assert became_leader(r2) == 1

    assert r1.alive, f"r1 exited ({r1.returncode})"
    assert not any(t.get("to") == "Stopping" for t in r1.transitions()), r1.transitions()
    wait_for(lambda: attempting(r1), WAIT, "r1 to wait as a connected attempter again")
    wait_for(lambda: metric(r1, "election_leader_tenure_seconds") == 0.0, WAIT, "r1's tenure to be 0")
    changes = wait_for(
        lambda: metric(r2, 'election_leadership_changes_total{reason="switchover"}'),
        WAIT,
        "r2 to count a leadership change for switchover",
    )
    assert changes == 1.0
    assert wait_for(lambda: metric(r2, "election_leader_tenure_seconds"), WAIT, "r2's tenure to grow") > 0

    onward = switchover(cluster)  # the next in the queue: r3 (r1 went to the tail)
    assert (onward.old, onward.old_epoch, onward.new) == ("r2", second, "r3"), onward
    back = switchover(cluster, "--to", "r1")
    assert (back.old, back.new) == ("r3", "r1"), back
    assert r1.alive
    wait_for(lambda: leading_epoch(r1) == back.new_epoch, WAIT, "r1 to say it leads again")
    expected = [first, second, onward.new_epoch, back.new_epoch]
    wait_for(lambda: nodes.epochs() == expected, WAIT, f"the history to be {expected}")
    for other in ("r4", "r5"):
        assert became_leader(cluster.by_identity(other)) == 0, f"{other} led"


def test_twenty_switchovers_in_a_row_leave_a_clean_audit_and_no_overlap(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes, handovers: Handovers
) -> None:
    """Twenty switchovers to varying targets (and every fourth to the next in the queue), five
    replicas: each moves leadership to its target in one new term, the terms in file-dir follow one
    another without overlapping, ``election audit`` is clean, and the history is the twenty
    terms in order, each ended for "switchover"."""
    identities = ["r1", "r2", "r3", "r4", "r5"]
    cluster = cluster_of(make_cluster, zk_server, election_path)
    epochs = [start_leading_first(cluster, *identities)]
    leader = "r1"
    targets = itertools.cycle([4, 2, 3, 1, 2, 4, 1, 3])  # offsets from the leader: varying targets
    for round_ in range(20):
        if round_ % 4 == 3:
            handover = switchover(cluster)
        else:
            target = identities[(identities.index(leader) + next(targets)) % len(identities)]
            handover = switchover(cluster, "--to", target)
            assert handover.new == target, handover
        assert (handover.old, handover.old_epoch) == (leader, epochs[-1]), handover
        handovers.record("switchover", handover.seconds, n=len(identities), to=handover.new)
        leader = handover.new
        epochs.append(handover.new_epoch)
        wait_for(
            lambda e=epochs[-1]: e in file_epochs(cluster), WAIT, f"the first file of epoch {epochs[-1]}"
        )

    assert all(r.alive for r in cluster.replicas), f"a replica exited: {cluster.replicas}"
    assert file_epochs(cluster) == epochs, f"terms in file-dir {file_epochs(cluster)}, switchovers {epochs}"
    check_terms_do_not_interleave(cluster.leader_files())
    assert fence_epoch(cluster) == epochs[-1]
    audit = run_audit(cluster)
    assert audit.returncode == 0, f"election audit:\n{audit.stdout}{audit.stderr}"

    wait_for(lambda: nodes.epochs() == epochs[-20:], WAIT, "the history to hold the last 20 terms")
    history = nodes.history()
    assert [t["reason"] for t in history[:-1]] == ["switchover"] * 19, history
    assert history[-1]["ended"] is None and history[-1]["reason"] is None, history[-1]
    for older, newer in itertools.pairwise(history):
        assert older["ended"] and parse_time(older["ended"]) <= parse_time(newer["began"]), (older, newer)
    leaders_seen = sum(became_leader(r) for r in cluster.replicas)
    assert leaders_seen == 21, f"{leaders_seen} transitions to Leader in the logs for 21 terms"


def test_a_request_aimed_at_a_stale_epoch_does_nothing(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """After one switchover (r1's epoch is now stale), requests naming r1's epoch are written into
    the ``switchover`` node by a client of our own, one ``--to r3`` and one to the next in the
    queue: the leader clears each, goes on writing in its own term, nobody else leads, no term is
    added to the history; then a real switchover ``--to r3`` still works."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    first = start_leading_first(cluster, "r1", "r2", "r3")
    current = switchover(cluster, "--to", "r2").new_epoch
    r2, r3 = cluster.by_identity("r2"), cluster.by_identity("r3")
    wait_for(lambda: current in file_epochs(cluster), WAIT, "r2's first file")

    wait_for(lambda: nodes.switchover() == {}, WAIT, "r2 to clear the switchover it took over by")
    for target in ("r3", None):
        request = nodes.request(from_epoch=first, from_identity="r1", to=target)
        wait_for(lambda: nodes.switchover() == {}, WAIT, f"the leader to clear the stale request {request}")
        written = len([f for f in cluster.leader_files() if f.epoch == current])
        wait_for(
            lambda n=written: len([f for f in cluster.leader_files() if f.epoch == current]) >= n + 3,
            WAIT,
            "three more files of r2's term after the clear",
        )
        assert nodes.leader_epoch() == current and leading_epoch(r2) == current
        assert file_epochs(cluster) == [first, current], file_epochs(cluster)
        assert nodes.epochs() == [first, current], nodes.history()
        assert became_leader(r3) == 0 and became_leader(r2) == 1
        assert attempting(r3) and attempting(cluster.by_identity("r1"))

    handover = switchover(cluster, "--to", "r3")
    assert (handover.old, handover.old_epoch, handover.new) == ("r2", current, "r3"), handover


# --------------------------------------------------------------------------------------------------
# --no-lead
# --------------------------------------------------------------------------------------------------


def test_no_lead_replicas_never_lead_through_switchovers_and_crashes(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """Three candidates and two ``--no-lead`` replicas (one by the flag, one by
    ``ELECTION_NO_LEAD``): through twenty hand-overs (mostly to the next in the queue) only
    candidates lead; ``switchover --to`` a no-lead replica is refused (status 2, one line); then
    every leading candidate is SIGKILLed in turn until none is left: nobody leads (the leader node
    stays absent, for longer than a session), ``election status`` exits 1 saying so and shows the
    two no-lead replicas."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    candidates = ["c1", "c2", "c3"]
    start_leading_first(cluster, "c1")
    no_leads = [
        spawn_with(cluster, "n1", "--no-lead"),
        spawn_with(cluster, "n2", env={"ELECTION_NO_LEAD": "true"}),
    ]
    for identity in candidates[1:]:
        spawn_attempter(cluster, identity)
    wait_for(lambda: all(attempting(r) for r in no_leads), WAIT, "the no-lead replicas to see the leader")

    leader = "c1"
    for round_ in range(20):
        if round_ % 5 == 4:
            target = candidates[(candidates.index(leader) + 1) % len(candidates)]
            handover = switchover(cluster, "--to", target)
        else:
            handover = switchover(cluster)
        assert handover.old == leader and handover.new in candidates, handover
        leader = handover.new
    for replica in no_leads:
        refused = cluster.cli("switchover", "--to", replica.identity)
        assert refused.returncode == 2, f"switchover --to {replica.identity}: {refused}"
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr, refused
        assert refused.stdout == "", refused
    for _ in candidates:
        killed = cluster.by_identity(leader)
        epoch = wait_for(lambda killed=killed: leading_epoch(killed), WAIT, f"{leader} to say it leads")
        assert epoch == nodes.leader_epoch()
        killed.send(signal.SIGKILL)
        killed.wait_exit(WAIT)
        left = [r for r in cluster.running if r.identity in candidates]
        if not left:
            break
        successor = wait_for(
            lambda left=left, epoch=epoch: next((r for r in left if (leading_epoch(r) or 0) > epoch), None),
            WAIT,
            f"a candidate to lead after {leader} was killed",
        )
        leader = successor.identity

    wait_for(lambda: nodes.leader_epoch() is None, WAIT, "the last candidate's session to expire")
    holds(
        lambda: nodes.leader_epoch() is None and all(r.state() != "Leader" for r in no_leads),
        1.5 * SESSION,
        "a no-lead replica took the leader node",
    )
    for replica in no_leads:
        assert replica.alive and became_leader(replica) == 0, f"{replica.identity} led: {cluster.report()}"

    code, view, stderr = cluster.election_status()
    assert code == 1 and view.get("leader") is None, (code, view, stderr)
    members = {m["identity"] for m in view["members"]}
    assert members == {"n1", "n2"}, view["members"]
    text = cluster.cli("status")
    assert text.returncode == 1, text
    assert "leader:  none" in text.stdout, text.stdout
    for identity in ("n1", "n2"):
        assert re.search(rf"{identity}[^,\n]*no-lead", text.stdout), (
            f"status does not show {identity} as no-lead:\n{text.stdout}"
        )
