"""The fault catalogue and its contract, without starting anything: the order a seed draws in, what
each fault declares, what :func:`tests.chaos.runner.plan` leaves out, and that healing is idempotent."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field

import pytest

from tests.chaos.faults import CATALOGUE, EXEC_FAULTS, FAULTS, Fault
from tests.chaos.faults.base import NEEDS
from tests.chaos.model import Promise
from tests.chaos.runner import Chaos, plan

pytestmark = pytest.mark.chaos

# A soak's seed draws from the runnable faults in catalogue order: reordering would change what
# every recorded seed (docs/RELIABILITY.md) runs. New faults go at the end. With each: whether the
# exec share runs it (its module says why not, if not).
ORDER = [
    ("leader_sigkill", True),
    ("leader_sigstop", False),
    ("leader_sigterm", True),
    ("zk_restart", True),
    ("zk_member_kill", True),
    ("zk_leader_kill", True),
    ("zk_quorum_loss", True),
    ("connection_cut", True),
    ("zk_freeze", True),
    ("disk_full", False),
    ("disk_read_only", False),
    ("leader_node_deleted", True),
    ("leader_frozen_mid_write", False),
    ("granted_session_short", False),
    ("slow_fsync_partitioned", False),
    ("fence_corrupt", False),
    ("foreign_lock_holder", False),
    ("clock_skew", False),
]


def test_the_catalogue_keeps_the_order_recorded_seeds_draw_in() -> None:
    assert list(FAULTS)[: len(ORDER)] == [name for name, _ in ORDER]
    assert [n for n in EXEC_FAULTS if n in dict(ORDER)] == [name for name, exec_share in ORDER if exec_share]


@pytest.mark.parametrize("fault", CATALOGUE, ids=lambda f: f.name)
def test_every_fault_declares_what_it_needs_and_promises(fault: Fault) -> None:
    assert fault.name.isidentifier() and fault.summary, fault
    assert isinstance(fault.promise, Promise), f"{fault.name} promises nothing"
    assert set(fault.needs) <= set(NEEDS), f"{fault.name} needs {fault.needs}, known: {NEEDS}"
    assert type(fault).inject is not Fault.inject, f"{fault.name} has no inject"
    module = sys.modules[type(fault).__module__]
    assert (inspect.getdoc(module) or "").strip(), f"{module.__name__} does not say what the fault promises"


def test_what_cannot_run_here_is_left_out_with_the_reason() -> None:
    runnable, skipped = plan("standalone", ["leader_sigkill", "zk_quorum_loss", "zk_member_kill"])
    assert runnable == ["leader_sigkill"]
    assert skipped == {n: "needs a ZooKeeper ensemble" for n in ("zk_quorum_loss", "zk_member_kill")}
    runnable, skipped = plan("ensemble", ["disk_full", "zk_freeze"], work="exec")
    assert "zk_freeze" in runnable
    assert skipped["disk_full"] == "not in the exec share (see EXEC_FAULTS)"


@dataclass
class _Mechanism:
    """Stands for a cut, a stall, a filler or a tmpfs: counts how often it was undone."""

    mounted: bool = True
    undone: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.undone.append("stop")

    def remove(self) -> None:
        self.undone.append("remove")

    def remount(self, mode: str, timeout: float = 0.0) -> None:
        self.undone.append(f"remount {mode}")


def test_healing_every_fault_twice_undoes_each_mechanism_once() -> None:
    ctx = Chaos.__new__(Chaos)  # no replicas, no ZooKeeper: only what the heals touch
    cut, stall, filler, tmpfs = _Mechanism(), _Mechanism(), _Mechanism(), _Mechanism()
    ctx.cut, ctx.stall, ctx.filler, ctx.tmpfs = cut, stall, filler, tmpfs  # type: ignore[assignment]
    ctx.clear_faults()
    ctx.clear_faults()
    assert (ctx.cut, ctx.stall, ctx.filler) == (None, None, None)
    assert (cut.undone, stall.undone, filler.undone) == (["remove"], ["stop"], ["stop"])
    assert tmpfs.undone == ["remount rw", "remount rw"]  # a mounted tmpfs is made writable each time
