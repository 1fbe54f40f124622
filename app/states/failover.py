"""Failover: something broke; heal, then start over from Init. Never lead from here.

How it heals:

* A lost connection is re-established by the coordination client itself, which keeps reconnecting
  with exponential backoff (capped at ``failover-backoff-max``) and opens a new session if the old
  one expired. Failover waits for that, woken by the client's state change, and goes to Init the
  moment the connection is back.
* Any other failure (``file-dir`` unusable, a ZooKeeper call that failed while connected) is retried
  by going back to Init after a backoff that doubles with each consecutive visit
  (0.25 s, 0.5 s, ... up to ``failover-backoff-max``).
* Init re-checks everything, so leadership is only ever regained through Attempter, with a live
  session.

Bounded: if the replica has done no useful work (published a file as leader, or, as a standby,
seen the directory's publish counter move: ``app.states.progress``) within ``failover-timeout`` of
the first failure, it goes to Stopping with exit status 1, so that the orchestrator restarts it
loudly. A replica that keeps failing comes back here with a backoff that doubles each time, so it
begins at most :func:`max_terms` terms before it gives up: leadership does not spin.
"""

from __future__ import annotations

import logging

from app.machine import Context, StateName, Transition
from app.ports.coordination import ConnectionState

log = logging.getLogger("election.states.failover")

BACKOFF_INITIAL = 0.25
EXIT_GAVE_UP = 1


class Failover:
    name = StateName.FAILOVER

    def run(self, ctx: Context) -> Transition:
        settings = ctx.settings
        coordinator = ctx.coordinator
        ctx.term = None
        now = ctx.now()
        if ctx.failing_since is None:
            ctx.failing_since = now
        ctx.unhealthy = f"healing since {now - ctx.failing_since:.3g}s: {ctx.entered_because}"
        ctx.failover_streak += 1
        backoff = self.backoff(ctx.failover_streak, settings.failover_backoff_max)
        retry_at = now + backoff
        give_up_at = ctx.failing_since + settings.failover_timeout
        was_disconnected = coordinator.state() is not ConnectionState.CONNECTED
        log.info(
            "healing (attempt %d, retry in %.3gs, give up in %.3gs)",
            ctx.failover_streak,
            backoff,
            give_up_at - now,
            extra={"event": "failover", "attempt": ctx.failover_streak, "backoff_seconds": backoff},
        )
        while True:
            if ctx.stop_reason is not None:
                return Transition(StateName.STOPPING, ctx.stop_reason)
            now = ctx.now()
            if now >= give_up_at:
                ctx.exit_code = EXIT_GAVE_UP
                return Transition(
                    StateName.STOPPING,
                    f"could not heal within failover-timeout {settings.failover_timeout:g}s",
                )
            state = coordinator.state()
            if state is ConnectionState.CONNECTED:
                if was_disconnected:
                    return Transition(StateName.INIT, "ZooKeeper connection restored")
                if now >= retry_at:
                    return Transition(StateName.INIT, f"retrying after {backoff:g}s backoff")
            else:
                was_disconnected = True
                if state is ConnectionState.CLOSED:
                    # Nothing is reconnecting for us (start failed or the client was closed).
                    coordinator.start()
            deadline = give_up_at if now >= retry_at else min(retry_at, give_up_at)
            ctx.wait_until(deadline)

    @staticmethod
    def backoff(streak: int, cap: float) -> float:
        """Delay before the ``streak``-th consecutive retry: 0.25 s doubling, capped."""
        return float(min(cap, BACKOFF_INITIAL * 2 ** max(streak - 1, 0)))


def max_terms(failover_timeout: float, cap: float) -> int:
    """The most terms one replica can begin during one run of failures before it gives up.

    Each term that fails ends in Failover (a resignation, a lost confirmation), and the next
    begins only after that visit's backoff (0.25 s, doubling, capped at ``cap``); the run ends,
    with exit status 1, once ``failover_timeout`` has passed since it began. So the terms are at
    most one plus the number of backoffs that fit in ``failover_timeout``: with the defaults
    (60 s, 5 s) 16; with 8 s and 5 s, 6. A cluster of N replicas begins at most N times that.
    """
    terms, elapsed, streak = 1, 0.0, 1
    while True:
        elapsed += Failover.backoff(streak, cap)
        if elapsed >= failover_timeout:
            return terms
        terms += 1
        streak += 1
