"""Every ZooKeeper server at once: killed and started again (``zk_restart``; sessions may or may not
survive, so either term is fine), or frozen with SIGSTOP for half the session timeout
(``zk_freeze``; sessions survive, at worst one clean hand-over). Either way one agreed leader writes
within the recovery bound of the servers' return."""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import FREEZE_ZK, Before, Outcome, Promise


class EveryServer(Fault):
    """``zk_restart`` or ``zk_freeze``: the whole ensemble disturbed, the disturbance its parameter."""

    promise = Promise("any")
    exec_share = True

    def __init__(self, *, freeze: bool) -> None:
        self.freeze = freeze
        self.name = "zk_freeze" if freeze else "zk_restart"
        self.summary = (
            "ZooKeeper is frozen (SIGSTOP) for half the session timeout"
            if freeze
            else "every ZooKeeper server is killed and started again"
        )

    def inject(self, ctx: Election, before: Before) -> Outcome:
        t0 = time.time()
        if not self.freeze:
            ctx.zk.restart()
            cleared = time.time()
            return Outcome(t0, cleared, details={"zk_down_s": cleared - t0})
        for server in ctx.zk.servers:
            server.freeze()
        try:
            time.sleep(FREEZE_ZK)  # the fault's duration, not a wait for a condition
        finally:
            for server in ctx.zk.servers:
                server.thaw()
        cleared = time.time()
        return Outcome(t0, cleared, details={"frozen_s": cleared - t0})
