"""Attempter: become leader as soon as the leader node is free, at no cost to ZooKeeper meanwhile.

How it tries (look before you create):

* It looks at ``<election-path>/leader`` with a watch. A look is a read: while someone else leads,
  a periodic attempt costs ZooKeeper no write transaction.
* Only when the node is absent does it create it (ephemeral, with our identity). Losing that race
  to another replica is fine: the create fails, and the look that follows sets the watch again.
* A node that already belongs to our session (a create retried after a lost reply, or a session that
  survived a short disconnection) is ours: we lead with its epoch.
* It looks when entering, then every ``attempter-timeout`` shortened by up to 20 % of jitter (so
  replicas don't look in lockstep, and each makes progress at least once per ``attempter-timeout``),
  **and** at once when the watch reports the node deleted: a graceful hand-over takes one
  round-trip, whatever ``attempter-timeout`` is.

Leaves for Leader (with ``ctx.term`` set), Failover (connection not CONNECTED, or a ZooKeeper error),
or Stopping (stop requested).
"""

from __future__ import annotations

import logging

from app.machine import Context, StateName, Transition
from app.ports.coordination import ConnectionState, CoordinationError, LeaderNode

log = logging.getLogger("election.states.attempter")

# Each period is attempter-timeout x (1 - JITTER x u), u from the injected source in [0, 1).
JITTER = 0.2


class Attempter:
    name = StateName.ATTEMPTER

    def run(self, ctx: Context) -> Transition:
        ctx.term = None
        next_attempt = ctx.now()
        woken = False
        while True:
            if ctx.stop_reason is not None:
                return Transition(StateName.STOPPING, ctx.stop_reason)
            now = ctx.now()
            attempt = woken or now >= next_attempt
            if attempt:
                ctx.clear_wakeup()
            state = ctx.coordinator.state()
            if state is not ConnectionState.CONNECTED:
                return Transition(StateName.FAILOVER, f"ZooKeeper connection {state.value}")
            if attempt:
                try:
                    outcome = self._attempt(ctx)
                except CoordinationError as exc:
                    return Transition(StateName.FAILOVER, f"leadership attempt failed: {exc}")
                if outcome is not None:
                    return outcome
            while next_attempt <= now:
                next_attempt += self.period(ctx)
            woken = ctx.wait_until(next_attempt)

    @staticmethod
    def period(ctx: Context) -> float:
        """The next interval between periodic attempts: never longer than ``attempter-timeout``."""
        fraction = min(max(ctx.jitter(), 0.0), 1.0)
        return ctx.settings.attempter_timeout * (1.0 - JITTER * fraction)

    @staticmethod
    def _attempt(ctx: Context) -> Transition | None:
        coordinator = ctx.coordinator
        node = coordinator.leader(watch=True)
        if node is None:
            created = coordinator.create_leader(
                {
                    "identity": ctx.settings.identity,
                    "acquired_at": ctx.clock.wall().isoformat(timespec="microseconds"),
                }
            )
            if created is not None:
                return _lead(ctx, created, "created the leader node")
            # Lost the race: somebody created it first. Look again so the watch is set on theirs.
            node = coordinator.leader(watch=True)
        ctx.observed_leader = node
        if node is not None and node.owner == coordinator.session_id():
            return _lead(ctx, node, "the leader node already belongs to our session")
        if node is not None:
            # A healthy standby behind a live leader: whatever failure streak led here is over.
            # (Not on becoming leader: a leader whose writes keep failing must not reset it.)
            ctx.work_done()
        log.debug(
            "leader is %s",
            node.identity if node is not None else "nobody",
            extra={"event": "attempt", "leader": node.identity if node else None},
        )
        return None


def _lead(ctx: Context, node: LeaderNode, how: str) -> Transition:
    ctx.term = node
    ctx.observed_leader = node
    return Transition(StateName.LEADER, f"{how} (epoch {node.epoch})")
