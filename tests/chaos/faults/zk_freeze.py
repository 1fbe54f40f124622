"""Every ZooKeeper server frozen (SIGSTOP) for half the session timeout: sessions survive, so one
agreed leader writes within the recovery bound of the thaw (at worst after one clean hand-over)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.chaos.faults.base import Fault
from tests.chaos.model import FREEZE_ZK, Before, Outcome, Promise

if TYPE_CHECKING:
    from tests.chaos.runner import Chaos


class ZkFreeze(Fault):
    name = "zk_freeze"
    summary = "ZooKeeper is frozen (SIGSTOP) for half the session timeout"
    promise = Promise("any")
    exec_share = True

    def inject(self, ctx: Chaos, before: Before) -> Outcome:
        t0 = time.time()
        for server in ctx.zk.servers:
            server.freeze()
        try:
            time.sleep(FREEZE_ZK)  # the fault's duration, not a wait for a condition
        finally:
            for server in ctx.zk.servers:
                server.thaw()
        cleared = time.time()
        return Outcome(t0, cleared, details={"frozen_s": cleared - t0})
