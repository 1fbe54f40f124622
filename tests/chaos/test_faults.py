"""One fault per test, on real replicas and a real ZooKeeper (standalone and a 3-node ensemble).

Each test injects one fault through :meth:`tests.chaos.harness.Chaos.run`, which checks everything
the service promises after it (the audit, one agreed leader within the fault's bound, no unexpected
exit, no overlap between terms) and measures the figures recorded in the results file; then every
replica is stopped with SIGTERM, must exit 0, and the directory must audit clean at rest.

Two tests pin down gaps the suite found in the service, now fixed: Init's clean-up of leftovers
takes the fence lock, and a replica adopts its own queue node after a lost reply. The last five are
issue 9's faults (a granted session shorter than asked, a slow fsync inside a partition, a corrupt
fence, a foreign holder of the fence lock, skewed wall clocks).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.chaos.conftest import MakeChaos
from tests.chaos.evidence import read_file
from tests.chaos.harness import CRASH_BOUND, HOLD_MAX, WAIT, FaultResult, unavailable
from tests.chaos.infra import SyscallStall
from tests.e2e.cluster import poll

pytestmark = pytest.mark.chaos

BOTH = pytest.mark.parametrize("kind", ["standalone", "ensemble"])


def inject(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str, fault: str, **options
) -> FaultResult:
    for need in ("relays", "tmpfs"):
        if options.get(need) and (reason := unavailable(need, kind)) is not None:
            pytest.skip(reason)
    chaos = make_chaos(kind, **options)
    result = chaos.run(fault)
    chaos_results(request.node.name, result)
    assert result.ok, f"{fault} [{kind}]: " + "\n  ".join(["", *result.violations])
    problems = chaos.finish()
    assert not problems, f"after {fault} [{kind}]: " + "\n  ".join(["", *problems])
    return result


@BOTH
def test_leader_sigkill(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    result = inject(
        make_chaos, chaos_results, request, kind, "leader_sigkill", replicas=5 if kind == "ensemble" else 3
    )
    assert result.leader_after != result.leader_before


@BOTH
def test_leader_sigstop_past_the_session(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    result = inject(make_chaos, chaos_results, request, kind, "leader_sigstop")
    assert result.leader_after != result.leader_before
    assert result.stale_writes == 0 and result.overlap_s == 0


@BOTH
def test_leader_sigterm(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    result = inject(make_chaos, chaos_results, request, kind, "leader_sigterm")
    assert result.leader_after != result.leader_before


@BOTH
def test_zookeeper_restart(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    inject(make_chaos, chaos_results, request, kind, "zk_restart")


def test_member_of_the_leader_killed_keeps_its_term(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    result = inject(make_chaos, chaos_results, request, "ensemble", "zk_member_kill")
    assert (result.leader_after, result.epoch_after) == (result.leader_before, result.epoch_before)


def test_zookeeper_leader_member_killed_keeps_the_term(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    result = inject(make_chaos, chaos_results, request, "ensemble", "zk_leader_kill")
    assert (result.leader_after, result.epoch_after) == (result.leader_before, result.epoch_before)


def test_quorum_lost_and_restored(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    inject(make_chaos, chaos_results, request, "ensemble", "zk_quorum_loss")


@BOTH
def test_leader_connection_cut(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    result = inject(make_chaos, chaos_results, request, kind, "connection_cut", relays=True)
    assert result.leader_after != result.leader_before


@BOTH
def test_zookeeper_frozen_shorter_than_the_session(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    result = inject(make_chaos, chaos_results, request, kind, "zk_freeze")
    # No leadership change is expected; at worst one clean hand-over (the result records which).
    assert result.new_terms <= 1


def test_file_dir_full(make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest) -> None:
    result = inject(make_chaos, chaos_results, request, "standalone", "disk_full", tmpfs=True)
    assert result.details["write_errors"] >= 3


def test_file_dir_read_only(make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest) -> None:
    result = inject(make_chaos, chaos_results, request, "standalone", "disk_read_only", tmpfs=True)
    assert result.details["write_errors"] >= 3


@BOTH
def test_operator_deletes_the_leader_node(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest, kind: str
) -> None:
    result = inject(
        make_chaos,
        chaos_results,
        request,
        kind,
        "leader_node_deleted",
        replicas=5 if kind == "ensemble" else 3,
    )
    assert result.epoch_after != result.epoch_before


def test_leader_frozen_inside_its_write_is_fenced(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    if (reason := unavailable("strace", "standalone")) is not None:
        pytest.skip(reason)
    result = inject(make_chaos, chaos_results, request, "standalone", "leader_frozen_mid_write")
    assert result.stale_writes == 0 and result.overlap_s == 0


def test_a_replica_passing_init_leaves_the_leaders_write_alone(make_chaos: MakeChaos) -> None:
    if (reason := unavailable("strace", "standalone")) is not None:
        pytest.skip(reason)
    chaos = make_chaos("standalone")
    before = chaos.before()
    leader = before.leader
    written = len(chaos.files_of(before.epoch))
    chaos.stall = SyscallStall(leader.pid, HOLD_MAX, chaos.workdir / "strace.log")
    try:
        poll(chaos.stall.stalled, WAIT, f"{leader.identity} to be held at publishing a file")
        held = [n for n in os.listdir(chaos.file_dir) if n.startswith(".leader-")]
        # A replica starting (or healing through Init) while the leader is between writing its
        # temporary file and linking it.
        late = chaos.cluster.spawn("replica-late")
        # Init's clean-up waits for the fence lock, which the held leader holds: it cannot pass yet
        # (its lock wait times out and it retries through Failover).
    finally:
        chaos.stall.stop()
        chaos.stall = None
    poll(lambda: late.state() == "Attempter", WAIT, "the late replica to pass Init")
    poll(lambda: len(chaos.files_of(before.epoch)) >= written + 3, WAIT, "the leader to write on")
    errors = [r["message"] for r in leader.log_records() if r.get("event") == "write_error"]
    assert not errors, f"the leader's write of {held} failed because another replica passed Init: {errors}"


def test_a_lost_reply_to_joining_the_queue_does_not_slow_the_next_hand_over(make_chaos: MakeChaos) -> None:
    if (reason := unavailable("strace", "standalone")) is not None:
        pytest.skip(reason)
    chaos = make_chaos("standalone", replicas=1)
    before = chaos.before()
    zk = chaos.zk.servers[0]
    # A second replica, held at the fsync of Init's probe file (just before it joins the queue).
    standby = chaos.cluster.spawn("replica-2")
    stall = SyscallStall(standby.pid, HOLD_MAX, chaos.workdir / "strace.log", syscall="fsync")
    try:
        poll(stall.stalled, WAIT, "replica-2 to be held in Init")
        zk.freeze()  # its request to join the queue will be applied, but only after it gave up
        try:
            stall.stop()
            poll(
                lambda: any("cannot join the queue" in str(t.get("reason")) for t in standby.transitions()),
                WAIT,
                "replica-2's request to join the queue to time out",
            )
        finally:
            zk.thaw()  # within the session timeout: every session survives
    finally:
        stall.stop()
    chaos.cluster.wait_for_sole_leader(WAIT)
    poll(lambda: standby.state() == "Attempter", WAIT, "replica-2 to wait as an attempter")
    # The leader dies: replica-2 should take over once its session expires (about 2 s).
    t0 = before.leader.send(signal.SIGKILL)
    first = chaos.wait_newer_files(before.epoch, 1, 30.0)[0]
    handover = read_file(chaos.file_dir / first).written_at - t0
    assert handover < CRASH_BOUND, f"replica-2 took over {handover:.1f}s after the leader died"


def test_granted_session_shorter_than_requested(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    """Issue 9 item 1: replicas asking for 10 s from tickTime-200 servers run on the 4 s granted."""
    result = inject(make_chaos, chaos_results, request, "standalone", "granted_session_short")
    assert result.details["crash_handover_s"] is not None


def test_slow_fsync_inside_a_partition(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    """Issue 9 items 1-2: a leader held in fsync past its session while cut off publishes nothing
    once the next term's node exists."""
    if (reason := unavailable("strace", "standalone")) is not None:
        pytest.skip(reason)
    result = inject(make_chaos, chaos_results, request, "standalone", "slow_fsync_partitioned", relays=True)
    assert result.leader_after != result.leader_before
    assert result.stale_writes == 0 and result.overlap_s == 0


def test_corrupt_fence(make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest) -> None:
    """Issue 9 item 7: a fence overwritten with garbage is rebuilt; the cluster writes on."""
    inject(make_chaos, chaos_results, request, "standalone", "fence_corrupt")


def test_foreign_holder_of_the_fence_lock(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    """Issue 9 item 7: a foreign process holding the fence lock for a while: bounded terms, recovery."""
    inject(make_chaos, chaos_results, request, "standalone", "foreign_lock_holder")


def test_clock_skew_between_replicas(
    make_chaos: MakeChaos, chaos_results, request: pytest.FixtureRequest
) -> None:
    """Issue 9 item 10: hand-overs to and from replicas 2 s behind leave a directory that audits clean."""
    if (reason := unavailable("faketime", "standalone")) is not None:
        pytest.skip(reason)
    result = inject(make_chaos, chaos_results, request, "standalone", "clock_skew")
    assert result.new_terms >= 2
