# transitional re-export: removed at merge (issue 12)
"""Moved to the kit: servers to :mod:`tools.zookeeper_target`, the relay to :mod:`tools.relay`, faults
to :mod:`tools.faults` (network, disk, clock, syscalls, locks)."""

from tools.faults.clock import faketime_unavailable, skewed_clock_env
from tools.faults.disk import Filler, Tmpfs, tmpfs_unavailable
from tools.faults.locks import ForeignLockHolder
from tools.faults.network import (
    CUT_COMMENT,
    AddressCut,
    LoopbackCut,
    iptables_unavailable,
    isolate_member,
    remove_stale_cuts,
    tcp_connections,
)
from tools.faults.syscalls import SyscallStall, strace_unavailable
from tools.relay import Relay
from tools.zookeeper_target import TICK_MS, ZK_KINDS, ZkTarget

__all__ = [
    "CUT_COMMENT",
    "TICK_MS",
    "ZK_KINDS",
    "AddressCut",
    "Filler",
    "ForeignLockHolder",
    "LoopbackCut",
    "Relay",
    "SyscallStall",
    "Tmpfs",
    "ZkTarget",
    "faketime_unavailable",
    "iptables_unavailable",
    "isolate_member",
    "remove_stale_cuts",
    "skewed_clock_env",
    "strace_unavailable",
    "tcp_connections",
    "tmpfs_unavailable",
]
