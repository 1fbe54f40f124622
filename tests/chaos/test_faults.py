"""One fault per test, on real replicas and a real ZooKeeper (standalone and a 3-node ensemble).

Each test injects one fault through :meth:`tests.chaos.runner.Chaos.run`, which checks everything
the service promises after it (the audit, one agreed leader within the fault's bound, no unexpected
exit, no overlap between terms) and measures the figures recorded in the results file; then every
replica is stopped with SIGTERM, must exit 0, and the directory must audit clean at rest.

Two tests pin down gaps the suite found in the service, now fixed: Init's clean-up of leftovers
takes the fence lock, and a replica adopts its own queue node after a lost reply. The last five are
issue 9's faults (a granted session shorter than asked, a slow fsync inside a partition, a corrupt
fence, a foreign holder of the fence lock, skewed wall clocks).
"""

from __future__ import annotations

import functools
import os
import signal

import pytest

from tests.chaos.conftest import MakeChaos
from tests.chaos.faults import need_unavailable
from tests.chaos.injection import RunFault, inject
from tests.chaos.model import CRASH_BOUND, HOLD_MAX, WAIT
from tools.faults.syscalls import SyscallStall
from tools.leader_files import read
from tools.waiting import wait_for

pytestmark = pytest.mark.chaos

BOTH = pytest.mark.parametrize("kind", ["standalone", "ensemble"])


@pytest.fixture
def run_fault(make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest) -> RunFault:
    """``run_fault(kind, fault, **options)``: :func:`tests.chaos.injection.inject` for this test."""
    return functools.partial(inject, make_chaos, chaos_results, request.node.name)


@BOTH
def test_leader_sigkill(run_fault: RunFault, kind: str) -> None:
    result = run_fault(kind, "leader_sigkill", replicas=5 if kind == "ensemble" else 3)
    assert result.leader_after != result.leader_before


@BOTH
def test_leader_sigstop_past_the_session(run_fault: RunFault, kind: str) -> None:
    result = run_fault(kind, "leader_sigstop")
    assert result.leader_after != result.leader_before
    assert result.stale_writes == 0 and result.overlap_s == 0


@BOTH
def test_leader_sigterm(run_fault: RunFault, kind: str) -> None:
    result = run_fault(kind, "leader_sigterm")
    assert result.leader_after != result.leader_before


@BOTH
def test_zookeeper_restart(run_fault: RunFault, kind: str) -> None:
    run_fault(kind, "zk_restart")


def test_member_of_the_leader_killed_keeps_its_term(run_fault: RunFault) -> None:
    result = run_fault("ensemble", "zk_member_kill")
    assert (result.leader_after, result.epoch_after) == (result.leader_before, result.epoch_before)


def test_zookeeper_leader_member_killed_keeps_the_term(run_fault: RunFault) -> None:
    result = run_fault("ensemble", "zk_leader_kill")
    assert (result.leader_after, result.epoch_after) == (result.leader_before, result.epoch_before)


def test_quorum_lost_and_restored(run_fault: RunFault) -> None:
    run_fault("ensemble", "zk_quorum_loss")


@BOTH
def test_leader_connection_cut(run_fault: RunFault, kind: str) -> None:
    result = run_fault(kind, "connection_cut")
    assert result.leader_after != result.leader_before


@BOTH
def test_zookeeper_frozen_shorter_than_the_session(run_fault: RunFault, kind: str) -> None:
    result = run_fault(kind, "zk_freeze")
    # No leadership change is expected; at worst one clean hand-over (the result records which).
    assert result.new_terms <= 1


def test_file_dir_full(run_fault: RunFault) -> None:
    result = run_fault("standalone", "disk_full")
    assert result.details["write_errors"] >= 3


def test_file_dir_read_only(run_fault: RunFault) -> None:
    result = run_fault("standalone", "disk_read_only")
    assert result.details["write_errors"] >= 3


@BOTH
def test_operator_deletes_the_leader_node(run_fault: RunFault, kind: str) -> None:
    result = run_fault(kind, "leader_node_deleted", replicas=5 if kind == "ensemble" else 3)
    assert result.epoch_after != result.epoch_before


def test_leader_frozen_inside_its_write_is_fenced(run_fault: RunFault) -> None:
    result = run_fault("standalone", "leader_frozen_mid_write")
    assert result.stale_writes == 0 and result.overlap_s == 0


def test_a_replica_passing_init_leaves_the_leaders_write_alone(make_chaos: MakeChaos) -> None:
    if (reason := need_unavailable("strace", "standalone")) is not None:
        pytest.skip(reason)
    chaos = make_chaos("standalone")
    before = chaos.before()
    leader = before.leader
    written = len(chaos.files_of(before.epoch))
    chaos.stall = SyscallStall(leader.pid, HOLD_MAX, chaos.workdir / "strace.log")
    try:
        wait_for(chaos.stall.stalled, WAIT, f"{leader.identity} to be held at publishing a file")
        held = [n for n in os.listdir(chaos.file_dir) if n.startswith(".leader-")]
        # A replica starting (or healing through Init) while the leader is between writing its
        # temporary file and linking it.
        late = chaos.cluster.spawn("replica-late")
        # Init's clean-up waits for the fence lock, which the held leader holds: it cannot pass yet
        # (its lock wait times out and it retries through Failover).
    finally:
        chaos.stall.stop()
        chaos.stall = None
    wait_for(lambda: late.state() == "Attempter", WAIT, "the late replica to pass Init")
    wait_for(lambda: len(chaos.files_of(before.epoch)) >= written + 3, WAIT, "the leader to write on")
    errors = [r["message"] for r in leader.log_records() if r.get("event") == "write_error"]
    assert not errors, f"the leader's write of {held} failed because another replica passed Init: {errors}"


def test_a_lost_reply_to_joining_the_queue_does_not_slow_the_next_hand_over(make_chaos: MakeChaos) -> None:
    if (reason := need_unavailable("strace", "standalone")) is not None:
        pytest.skip(reason)
    chaos = make_chaos("standalone", replicas=1)
    before = chaos.before()
    zk = chaos.zk.servers[0]
    # A second replica, held at the fsync of Init's probe file (just before it joins the queue).
    standby = chaos.cluster.spawn("replica-2")
    stall = SyscallStall(standby.pid, HOLD_MAX, chaos.workdir / "strace.log", syscall="fsync")
    try:
        wait_for(stall.stalled, WAIT, "replica-2 to be held in Init")
        zk.freeze()  # its request to join the queue will be applied, but only after it gave up
        try:
            stall.stop()
            wait_for(
                lambda: any("cannot join the queue" in str(t.get("reason")) for t in standby.transitions()),
                WAIT,
                "replica-2's request to join the queue to time out",
            )
        finally:
            zk.thaw()  # within the session timeout: every session survives
    finally:
        stall.stop()
    chaos.cluster.wait_for_sole_leader(WAIT)
    wait_for(lambda: standby.state() == "Attempter", WAIT, "replica-2 to wait as an attempter")
    # The leader dies: replica-2 should take over once its session expires (about 2 s).
    t0 = before.leader.send(signal.SIGKILL)
    first = chaos.wait_newer_files(before.epoch, 1, 30.0)[0]
    handover = read(chaos.file_dir / first).written_at - t0
    assert handover < CRASH_BOUND, f"replica-2 took over {handover:.1f}s after the leader died"


def test_granted_session_shorter_than_requested(run_fault: RunFault) -> None:
    """Issue 9 item 1: replicas asking for 10 s from tickTime-200 servers run on the 4 s granted."""
    result = run_fault("standalone", "granted_session_short")
    assert result.details["crash_handover_s"] is not None


def test_slow_fsync_inside_a_partition(run_fault: RunFault) -> None:
    """Issue 9 items 1-2: a leader held in fsync past its session while cut off publishes nothing
    once the next term's node exists."""
    result = run_fault("standalone", "slow_fsync_partitioned")
    assert result.leader_after != result.leader_before
    assert result.stale_writes == 0 and result.overlap_s == 0


def test_corrupt_fence(run_fault: RunFault) -> None:
    """Issue 9 item 7: a fence overwritten with garbage is rebuilt; the cluster writes on."""
    run_fault("standalone", "fence_corrupt")


def test_foreign_holder_of_the_fence_lock(run_fault: RunFault) -> None:
    """Issue 9 item 7: a foreign process holding the fence lock for a while: bounded terms, recovery."""
    run_fault("standalone", "foreign_lock_holder")


def test_clock_skew_between_replicas(run_fault: RunFault) -> None:
    """Issue 9 item 10: hand-overs to and from replicas 2 s behind leave a directory that audits clean."""
    result = run_fault("standalone", "clock_skew")
    assert result.new_terms >= 2
