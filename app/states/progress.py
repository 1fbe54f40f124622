"""Is the cluster's work being done? Healthy means files published, not merely "a leader exists".

A leader that holds the node but never manages to publish (its storage refuses every write, the
fence lock is held by a frozen foreign process) looks like a healthy cluster to its standbys if
they judge by the leader node alone: they would wait behind it forever, and a cluster whose storage
is broken for everyone would churn through terms without end and never say so. So the standbys
judge by the directory's publish counter (:meth:`app.ports.storage.Storage.progress`), which every
publish advances, whoever publishes:

* the counter rose above the highest it has seen: the work is being done; any failure streak is
  over (:meth:`app.machine.Context.work_done`). (A counter that restarts lower, after an operator
  emptied ``file-dir``, counts only once it passes that mark again; a replica restarted meanwhile
  starts afresh.)
* it has not moved for ``STALL_GRACE`` (two leader periods and one attempter period: a healthy
  leader publishes every ``leader-timeout``, and a standby looks every ``attempter-timeout``): the
  replica counts as failing from the last progress it saw, ``/readyz`` turns 503 with the reason;
* still nothing ``failover-timeout`` after that last progress: the replica exits with status 1,
  like a Failover that cannot heal, so that the orchestrator's restarts (CrashLoopBackOff) are the
  alarm.

A leader's failed write starts the same streak, also counted from the last useful work it did or
saw (:meth:`app.machine.Context.work_failed`). So a cluster that cannot work ends loud: a standby
exits ``max(failover-timeout, stall grace)`` after the last progress it saw (it wakes for it, between
its periodic looks), a leader once it has resigned after ``max-write-failures`` failed writes (in
Failover, whose bound counts from that same last progress).
"""

from __future__ import annotations

import logging

from app.config import Settings
from app.machine import Context, StateName, Transition
from app.ports.coordination import LeaderNode
from app.states.failover import EXIT_GAVE_UP

log = logging.getLogger("election.states.progress")


def stall_grace(ctx: Context) -> float:
    """How long a standby waits for the counter to move before it calls the cluster stalled."""
    return _grace(ctx.settings)


def _grace(settings: Settings) -> float:
    return 2.0 * settings.leader_timeout + settings.attempter_timeout


def exit_bound(settings: Settings, longest_failed_write: float) -> float:
    """Seconds after the last file published by which every replica of a cluster that cannot
    publish anything has exited with status 1.

    A standby sees the last file at its next look (within ``attempter-timeout``) and gives up
    ``max(failover-timeout, stall grace)`` later; a replica that leads at that moment gives up when
    its term ends, after ``max-write-failures`` failed writes, each at most a ``leader-timeout``
    apart and at most ``longest_failed_write`` long (the fence lock's wait, 2 s, is the slowest way
    a write fails here; a write stuck in the kernel is the liveness probe's business).
    """
    a, f, w = settings.attempter_timeout, settings.failover_timeout, settings.max_write_failures
    return a + max(f, _grace(settings)) + w * max(settings.leader_timeout, longest_failed_write)


def judge_leader(ctx: Context, leader: LeaderNode) -> Transition | None:
    """Called by a standby that found ``leader`` (not us) holding the node. None: wait on; else
    a transition to Stopping with exit status 1 (the cluster has published nothing for too long)."""
    if not ctx.work.shows_progress:
        # The command runner has no progress a standby could see: a live leader is all there is
        # to judge (its command is stopped inside the lease whenever it cannot confirm).
        ctx.work_done()
        return None
    now = ctx.now()
    published = ctx.storage.progress()
    # Only a counter above the highest seen is progress: a publish that failed at its link gives
    # its number back, and seeing the record go down again must not count as work done.
    if published is not None and (ctx.progress_seen is None or published > ctx.progress_seen):
        ctx.progress_seen = published
        ctx.work_done()
        return None
    stalled = now - ctx.progress_at
    if stalled < stall_grace(ctx):
        return None
    who = f"{leader.identity or 'another session'} (epoch {leader.epoch})"
    if ctx.failing_since is None:
        ctx.work_failed(f"no file published for {stalled:.3g}s although {who} leads")
        log.warning(
            "%s: the cluster may not be able to work",
            ctx.unhealthy,
            extra={"event": "no_progress", "stalled_seconds": round(stalled, 3), "leader": leader.identity},
        )
    failing_since = ctx.progress_at if ctx.failing_since is None else ctx.failing_since
    if now >= failing_since + ctx.settings.failover_timeout:
        ctx.exit_code = EXIT_GAVE_UP
        return Transition(
            StateName.STOPPING,
            f"no file published for {stalled:.3g}s although {who} leads: the cluster cannot work "
            f"(failover-timeout {ctx.settings.failover_timeout:g}s)",
        )
    return None


def due(ctx: Context) -> float | None:
    """When a standby's verdict may next change (it looks then, even between its periodic looks):
    the end of the grace, or, once failing, the moment it would give up. None: nothing pending."""
    if not ctx.work.shows_progress:
        return None
    grace_ends = ctx.progress_at + stall_grace(ctx)
    if ctx.failing_since is None:
        return grace_ends
    return max(grace_ends, ctx.failing_since + ctx.settings.failover_timeout)
