"""Two of three members stop for longer than the session: the leader's writes stop within the lease
(plus the followers' detection of the lost ZooKeeper leader), nobody is Leader at the end of the
outage, nobody exits, and one agreed leader writes within the recovery bound of the quorum's return."""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import QUORUM_HOLD, STOP_WRITING_BOUND, Before, Outcome, Promise


class ZkQuorumLoss(Fault):
    name = "zk_quorum_loss"
    summary = "2 of 3 members stop for longer than the session"
    needs = ("ensemble",)
    promise = Promise("any")
    exec_share = True

    def inject(self, ctx: Election, before: Before) -> Outcome:
        own = ctx.zk.server_of_session(before.session)
        others = [s for s in ctx.zk.servers if s is not own]
        stopped = [own, ctx.rng.choice(others)] if own is not None else ctx.rng.sample(others, 2)
        t0 = time.time()
        for member in stopped:
            member.stop()
        violations = []
        try:
            ctx.endure(QUORUM_HOLD, ctx.current(), "during the quorum loss", "the quorum loss to last")
            last = ctx.last_work(default=t0)
            if last - t0 > STOP_WRITING_BOUND:
                violations.append(f"a file was written {last - t0:.3f}s into the quorum loss")
            leading = [r.identity for r in ctx.cluster.leaders()]
            if leading:
                violations.append(f"{leading} still Leader {QUORUM_HOLD:g}s into the quorum loss")
        finally:
            ctx.zk.heal()
        cleared = time.time()
        return Outcome(
            t0,
            cleared,
            violations=violations,
            details={"last_write_after_fault_s": last - t0, "zk_down_s": cleared - t0},
        )
