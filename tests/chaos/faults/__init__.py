"""The faults of the chaos suite, one module per kind (or per family: two kinds that are one
mechanism with a parameter), and their catalogue.

:data:`CATALOGUE` is the one list: its order is the soak's (a seed draws from the runnable faults in
this order, so a new fault goes at the end to keep earlier seeds' sequences) and the order of the
soak's table. Adding a fault: a module here with a :class:`~tests.chaos.faults.base.Fault` subclass,
and its instance as a line of :data:`CATALOGUE`.
"""

from __future__ import annotations

import signal

from tests.chaos.faults import (
    clock_skew,
    connection_cut,
    fence_corrupt,
    foreign_lock_holder,
    granted_session_short,
    leader_frozen_mid_write,
    leader_node_deleted,
    leader_signals,
    leader_sigstop,
    slow_fsync_partitioned,
    storage,
    zk_member,
    zk_quorum_loss,
    zk_servers,
)
from tests.chaos.faults.base import Fault, need_unavailable

CATALOGUE: tuple[Fault, ...] = (
    leader_signals.LeaderSignal(signal.SIGKILL),
    leader_sigstop.LeaderSigstop(),
    leader_signals.LeaderSignal(signal.SIGTERM),
    zk_servers.EveryServer(freeze=False),
    zk_member.ZkMemberKill(),
    zk_member.ZkLeaderKill(),
    zk_quorum_loss.ZkQuorumLoss(),
    connection_cut.ConnectionCut(),
    zk_servers.EveryServer(freeze=True),
    storage.DiskFull(),
    storage.DiskReadOnly(),
    leader_node_deleted.LeaderNodeDeleted(),
    leader_frozen_mid_write.LeaderFrozenMidWrite(),
    granted_session_short.GrantedSessionShort(),
    slow_fsync_partitioned.SlowFsyncPartitioned(),
    fence_corrupt.FenceCorrupt(),
    foreign_lock_holder.ForeignLockHolderFault(),
    clock_skew.ClockSkew(),
)

FAULTS: dict[str, Fault] = {fault.name: fault for fault in CATALOGUE}
if len(FAULTS) != len(CATALOGUE):
    raise RuntimeError("two faults of the catalogue share a name")

# The faults the exec share runs (each module says why it is left out, if it is).
EXEC_FAULTS: tuple[str, ...] = tuple(fault.name for fault in CATALOGUE if fault.exec_share)

__all__ = ["CATALOGUE", "EXEC_FAULTS", "FAULTS", "Fault", "need_unavailable"]
