"""A process that is not a replica holds the fence lock for a while, then lets go: nothing is
published meanwhile, the replicas do not spin through leadership terms (a bound per failover-backoff
window), nobody exits (the hold is far shorter than failover-timeout), and the cluster writes again
within the recovery bound once the lock is free. Issue 9."""

from __future__ import annotations

import math
import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import (
    BACKOFF_MAX,
    LOCK_HOLD,
    MAX_TERMS_PER_REPLICA_PER_BACKOFF_WINDOW,
    Before,
    Outcome,
    Promise,
)
from tools.faults.locks import ForeignLockHolder
from tools.leader_files import observe


class ForeignLockHolderFault(Fault):
    name = "foreign_lock_holder"
    summary = f"a foreign process holds the fence lock for {LOCK_HOLD:g} s"
    promise = Promise("any")

    def inject(self, ctx: Election, before: Before) -> Outcome:
        replicas = ctx.current()
        acquired0 = ctx.metric("election_leadership_acquired_total", replicas)
        holder = ForeignLockHolder(ctx.file_dir / ".election-fence.lock")
        t0 = holder.locked_at
        try:
            ctx.endure(LOCK_HOLD, replicas, "while the fence lock was held", "the foreign lock hold to last")
            terms = ctx.metric("election_leadership_acquired_total", replicas) - acquired0
        finally:
            holder.release()
        cleared = time.time()
        published_meanwhile = [
            f.name for f in observe(ctx.file_dir)[0] if t0 + 0.01 < f.published < cleared - 0.01
        ]
        limit = MAX_TERMS_PER_REPLICA_PER_BACKOFF_WINDOW * math.ceil(LOCK_HOLD / BACKOFF_MAX) * len(replicas)
        violations = []
        if terms > limit:
            violations.append(
                f"{terms:g} leadership terms in {LOCK_HOLD:g} s of a held fence lock (limit {limit})"
            )
        if published_meanwhile:
            violations.append(f"published {published_meanwhile[:3]} while a foreign process held the lock")
        return Outcome(
            t0,
            cleared,
            violations=violations,
            details={"terms_while_held": terms, "held_s": cleared - t0},
        )
