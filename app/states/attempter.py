"""Attempter: become leader as soon as the leader node is free, at no cost to ZooKeeper meanwhile.

How it tries:

* It joins the queue of candidates (an ephemeral sequential node, once per session) and watches
  only the candidate just ahead of it. Only the head of the queue watches the leader node. So when
  the leader leaves, ZooKeeper notifies one replica, and one create follows: a hand-over costs the
  same with 3 replicas or 100 (no herd of notifications and failed creates).
* The head looks at ``<election-path>/leader`` (a read) and creates it (ephemeral, with our
  identity) only when it is absent; a node that already belongs to our session (a create retried
  after a lost reply, or a session that survived a short disconnection) is ours: we lead with its
  epoch.
* Every replica, head or not, also looks every ``attempter-timeout`` shortened by up to 20 % of
  jitter (so replicas don't look in lockstep), and creates the node if it finds it free. So each
  makes progress at least once per ``attempter-timeout`` even if the queue's head is stuck, and a
  periodic look costs ZooKeeper reads only while someone leads.
* The head wakes at once when the watch reports the node deleted: a graceful hand-over takes one
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
        try:
            ctx.coordinator.enter_queue()
        except CoordinationError as exc:
            return Transition(StateName.FAILOVER, f"cannot join the queue of candidates: {exc}")
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
                    outcome = self._attempt(ctx, periodic=now >= next_attempt)
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
    def _attempt(ctx: Context, *, periodic: bool) -> Transition | None:
        coordinator = ctx.coordinator
        head = coordinator.queue_head()  # not the head: now watching the candidate ahead
        if not head and not periodic:
            return None  # woken because the queue moved, and still not first
        node = coordinator.leader(watch=head)
        if node is None:
            created = coordinator.create_leader(
                {
                    "identity": ctx.settings.identity,
                    "acquired_at": ctx.clock.wall().isoformat(timespec="microseconds"),
                }
            )
            if created is not None:
                return _lead(ctx, created, "created the leader node")
            # Lost the race: somebody created it first. Look again (the head: to watch theirs).
            node = coordinator.leader(watch=head)
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
