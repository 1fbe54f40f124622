"""Every ZooKeeper server killed and started again: one agreed leader writing within the recovery
bound once the servers are back (sessions may or may not survive: either term is fine)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.chaos.faults.base import Fault
from tests.chaos.model import Before, Outcome, Promise

if TYPE_CHECKING:
    from tests.chaos.runner import Chaos


class ZkRestart(Fault):
    name = "zk_restart"
    summary = "every ZooKeeper server is killed and started again"
    promise = Promise("any")
    exec_share = True

    def inject(self, ctx: Chaos, before: Before) -> Outcome:
        t0 = time.time()
        ctx.zk.restart()
        cleared = time.time()
        return Outcome(t0, cleared, details={"zk_down_s": cleared - t0})
