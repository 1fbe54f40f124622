"""Leadership passes (gracefully) to replicas whose wall clocks are 2 s behind (libfaketime), then
back to a replica on the right clock; every replica is finally restarted on the right clock. The
audit must be clean: write order comes from the files' ``order``, not from ``written_at`` (before
issue 9: ``epoch_decreased``).

Not in the exec share: it checks the files' order.
"""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import SKEW, Before, Outcome, Promise
from tools.faults.clock import skewed_clock_env


class ClockSkew(Fault):
    name = "clock_skew"
    summary = f"leadership passes to replicas whose wall clocks are {SKEW.lstrip('-')} behind, and back"
    needs = ("faketime",)
    promise = Promise("new-term")

    def inject(self, ctx: Election, before: Before) -> Outcome:
        violations: list[str] = []
        skewed = skewed_clock_env(SKEW)
        t0 = time.time()
        for replica in ctx.current():
            if replica is not before.leader:
                ctx.restart(replica.identity, violations, env=skewed)
        old, _epoch = ctx.hand_over(violations)  # to a skewed replica
        ctx.restart(old.identity, violations)
        for replica in ctx.current():  # all but the (skewed) leader back on the right clock
            if replica.identity in ctx.spawn_env and replica.state() != "Leader":
                ctx.restart(replica.identity, violations)
        old, _epoch = ctx.hand_over(violations)  # back to the right clock
        ctx.restart(old.identity, violations)
        cleared = time.time()
        return Outcome(t0, cleared, violations=violations, details={"skew": SKEW})
