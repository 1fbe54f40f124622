"""Attempter: become leader as soon as the leader node is free, at no cost to ZooKeeper meanwhile.

How it tries:

* It joins the queue of candidates (an ephemeral sequential node, once per session) and watches
  only the candidate just ahead of it. Only the head of the queue watches the leader node, and a
  leader leaves the queue once its first write is out (Leader), so the head is the next leader.
  When the leader leaves, ZooKeeper notifies the head alone, and one create follows: a hand-over
  costs the same with 3 replicas or 100 (no herd of notifications and failed creates).
* Take-over without a look: when the leader node the head watches is deleted, the head creates it
  at once, without reading it or the queue first; the create's reply is the confirmation its first
  write needs (Leader). A reconnection alone never triggers such a create. The leader node, not the
  queue, decides who leads: a create out of turn is never unsafe, only wasted (one failed create,
  then a look).
* The queue moving: when the candidate just ahead of us is deleted (it became the leader and left
  the queue, or it went away), we may be the head now. That is known without a read when we were
  first or second in the queue (positions only shrink); from further back it takes one read of the
  queue, as in kazoo's lock recipe. A new head looks at once, so it watches the leader node before
  the leader leaves: this read is paid when a leader is elected, not when it leaves (before issue
  13 a leader stayed at the head, and the replica behind it, whose place had moved up unseen, read
  the queue during every hand-over).
* A look: read the queue (setting the watch on the one ahead), and, at the head, read the leader
  node with a watch and create it (ephemeral, with our identity) only when it is absent. A node
  that already belongs to our session (a create whose reply was lost, or a session that survived a
  short disconnection) is ours: we lead with its epoch.
* Every replica, head or not, also looks every ``attempter-timeout`` shortened by up to 20 % of
  jitter (so replicas don't look in lockstep). Such a periodic look is one read of the leader
  node: the queue is re-read only when a wake-up says it moved (the watch on the one ahead is
  already set).
* The head's grace: a replica behind the head that finds the node free does not create it at
  once: the head, woken by the deletion, is taking it (a hand-over's gap is a few ms; at a
  fleet's start every replica's first look finds it free). It looks again :func:`head_grace`
  later (``min(1 s, attempter-timeout / 2)``) and creates the node only if that look finds it
  free too. So a periodic look that falls in a hand-over's gap, or a fleet's start, does not elect
  a replica out of turn (nor costs the head a failed create), and a stuck head (session alive,
  loop not) still loses the node within ``attempter-timeout + head_grace`` of its going: every
  replica looks within ``attempter-timeout`` and the grace look follows. Both are tested with the
  fake clock (``tests/unit/test_attempter.py``).
* A leader elected out of turn (behind the head: a stuck head, a switchover to a named target
  further back, two looks that both fell in gaps) leaves the queue like any other, and its
  departure too wakes only the head, which watches the leader node from its first look after the
  create (the failed create's look; the switchover's clear wakes every replica, and the head
  looks at each wake-up). Every leader re-joins at the tail when it comes back here.

After the leader's work exited by itself (``ctx.rejoin_at``), it first sits out the backoff Leader
set, outside the queue, so that the others lead meanwhile.

Leaves for Leader (with ``ctx.term`` and ``ctx.term_confirmed_at`` set), Failover (connection not
CONNECTED, or a ZooKeeper error), or Stopping (stop requested).
"""

from __future__ import annotations

import logging

from app.machine import Context, StateName, Transition
from app.ports.coordination import ConnectionState, CoordinationError, LeaderNode
from app.states import progress, switchover

log = logging.getLogger("election.states.attempter")

# Each period is attempter-timeout x (1 - JITTER x u), u from the injected source in [0, 1).
JITTER = 0.2
# How long a replica behind the head waits, after finding the leader node free, before it looks
# again and creates it (at most half an attempter-timeout: see head_grace).
HEAD_GRACE = 1.0


def head_grace(ctx: Context) -> float:
    """The head's grace: far longer than a head needs to take a free node (a wake-up and one
    create: milliseconds; a loaded machine's pause: a fraction of a second), short enough that a
    stuck head costs at most this much more than ``attempter-timeout``."""
    return min(HEAD_GRACE, ctx.settings.attempter_timeout / 2.0)


class Attempter:
    name = StateName.ATTEMPTER

    def run(self, ctx: Context) -> Transition:
        ctx.term = None
        waited = self._sit_out(ctx)
        if waited is not None:
            return waited
        try:
            if not ctx.settings.no_lead:
                ctx.coordinator.enter_queue()
        except CoordinationError as exc:
            return Transition(StateName.FAILOVER, f"cannot join the queue of candidates: {exc}")
        ctx.coordinator.take_over_signal()  # forget deletions seen before we (re)joined
        ctx.coordinator.queue_moved()
        position: int | None = None  # candidates ahead of us when we last read the queue (at most)
        timer = _LookTimer(ctx)
        woken = False
        while True:
            if ctx.stop_reason is not None:
                return Transition(StateName.STOPPING, ctx.stop_reason)
            periodic = timer.due(ctx)
            if woken or periodic:
                ctx.clear_wakeup()
                outcome, position = _step(ctx, position, timer, woken=woken, periodic=periodic)
                if outcome is not None:
                    return outcome
            woken = ctx.wait_until(timer.next_look(ctx))

    @staticmethod
    def _sit_out(ctx: Context) -> Transition | None:
        """Wait out the backoff after our work exited by itself (``ctx.rejoin_at``, set by Leader):
        registered and visible, but not a candidate, so the others lead meanwhile."""
        rejoin_at, ctx.rejoin_at = ctx.rejoin_at, None
        while rejoin_at is not None and ctx.now() < rejoin_at:
            if ctx.stop_reason is not None:
                return Transition(StateName.STOPPING, ctx.stop_reason)
            ctx.wait_until(rejoin_at)
        if ctx.stop_reason is not None:
            return Transition(StateName.STOPPING, ctx.stop_reason)
        return None

    @staticmethod
    def period(ctx: Context) -> float:
        """The next interval between periodic attempts: never longer than ``attempter-timeout``."""
        fraction = min(max(ctx.jitter(), 0.0), 1.0)
        return ctx.settings.attempter_timeout * (1.0 - JITTER * fraction)


class _LookTimer:
    """When a replica looks without being woken: every period (:meth:`Attempter.period`, with
    jitter), at each new verdict deadline on the cluster's progress (once each), when a
    switchover request it deferred to stops binding it, and at the end of the head's grace."""

    def __init__(self, ctx: Context) -> None:
        self._next_attempt = ctx.now()
        self._now = self._next_attempt  # when due() last looked at the clock
        self._judged: float | None = None  # the verdict deadline (progress.due) we last looked for
        self._binding: float | None = None  # when the switchover request we deferred to stops binding us
        self._grace_ends: float | None = None  # when the head's grace we gave ends (see give_grace)

    def give_grace(self, ctx: Context) -> bool:
        """A replica behind the head found the node free: True if that look is the one at the end
        of the grace (the node was free a grace apart: create it); else start the grace (or wait
        out the one begun) and say False."""
        now = ctx.now()
        if self._grace_ends is None:
            self._grace_ends = now + head_grace(ctx)
            return False
        if now < self._grace_ends:
            return False
        self._grace_ends = None  # one create per grace: a later sighting gives a new one
        return True

    def taken(self) -> None:
        """The node was seen held, or we look as the head: no grace pending."""
        self._grace_ends = None

    def due(self, ctx: Context) -> bool:
        """Whether a look is due now, woken or not (a ``periodic`` one)."""
        now = self._now = ctx.now()
        deadline = progress.due(ctx)
        verdict = deadline is not None and deadline <= now and deadline != self._judged
        if verdict:
            self._judged = deadline
        released = self._binding is not None and now >= self._binding
        graced = self._grace_ends is not None and now >= self._grace_ends
        return now >= self._next_attempt or verdict or released or graced

    def next_look(self, ctx: Context) -> float:
        """When to wake up unless woken earlier, counted from the instant :meth:`due` looked."""
        while self._next_attempt <= self._now:
            self._next_attempt += Attempter.period(ctx)
        self._binding = switchover.expires_at(ctx)
        deadline = _next_look(ctx, self._next_attempt, self._now)
        if self._grace_ends is not None and self._grace_ends > self._now:
            deadline = min(deadline, self._grace_ends)
        return deadline


def _step(
    ctx: Context, position: int | None, timer: _LookTimer, *, woken: bool, periodic: bool
) -> tuple[Transition | None, int | None]:
    """One look at the world after a wake-up or at the period: (where to go, the queue position)."""
    state = ctx.coordinator.state()
    if state is not ConnectionState.CONNECTED:
        return Transition(StateName.FAILOVER, f"ZooKeeper connection {state.value}"), position
    try:
        if ctx.settings.no_lead:
            return (_observe(ctx) if periodic else None), position
        return _attempt(ctx, position, timer, periodic=periodic)
    except CoordinationError as exc:
        return Transition(StateName.FAILOVER, f"leadership attempt failed: {exc}"), position


def _next_look(ctx: Context, next_attempt: float, now: float) -> float:
    """When to look next: the period, or earlier for a verdict on the cluster's progress or for
    the moment a pending switchover stops binding us."""
    deadline = next_attempt
    for other in (progress.due(ctx), switchover.expires_at(ctx)):
        if other is not None and other > now:
            deadline = min(deadline, other)
    return deadline


def _attempt(
    ctx: Context, position: int | None, timer: _LookTimer, *, periodic: bool
) -> tuple[Transition | None, int | None]:
    """One attempt; returns (where to go, the queue position now known)."""
    # Read the signal on every attempt, woken or periodic: a deletion reported just as a wait timed out
    # (its wake-up cleared with the periodic one) must still count.
    signalled = ctx.coordinator.take_over_signal()
    moved = ctx.coordinator.queue_moved()
    if switchover.targeted(ctx):
        # The queue moved while we act as the target: our place is unknown until we read it again
        # (at the first attempt once the request no longer names us), or we would stay behind a
        # head that is gone, watched by nobody, if the request is withdrawn.
        return _attempt_as_target(ctx, None if moved else position, timer, signalled=signalled)
    if signalled and position == 0:
        # The leader node we watched as the head was deleted: take it at once, without a read.
        return _take_over(ctx, "took over the leader node", 0, timer), 0
    if moved and position is not None:
        # The candidate ahead of us left: it became the leader (leaders leave the queue after their
        # first write), or it went away. Positions only shrink, so from 0 or 1 we are the head now;
        # from further back, read the queue to know. A new head looks: it watches the leader node
        # from now on (and creates it if the one ahead was a leader that left without leaving the
        # queue first: died before its first write was out, or of a version before issue 13).
        position = 0 if position <= 1 else ctx.coordinator.queue_position()
        if position == 0:
            return _look(ctx, 0, timer)
    elif position is None:
        position = ctx.coordinator.queue_position()  # not the head: now watching the one ahead
    # Other wake-ups (a switchover request changed, a connection blip, the leader node's data)
    # do not move the queue: the watch on the one ahead still stands. Re-reading it on each would
    # make every switchover a herd of N queue reads.
    if position > 0 and not periodic:
        return None, position
    return _look(ctx, position, timer)


def _attempt_as_target(
    ctx: Context, position: int | None, timer: _LookTimer, *, signalled: bool
) -> tuple[Transition | None, int | None]:
    """An operator named us the next leader: act as the head (watch the node, take it at once on
    its deletion, no grace), wherever we stand in the queue. Our real place (``position``, None:
    not read yet) says in the log whether it leads out of turn, and is kept as it is: an unknown
    place is read once the request no longer names us (taken for the head's, a replica further
    back would take over out of turn at the next hand-over)."""
    if signalled:
        return _take_over(ctx, "took over the leader node by switchover", position, timer), position
    return _look(ctx, position, timer, as_head=True)[0], position


def _take_over(ctx: Context, how: str, position: int | None, timer: _LookTimer) -> Transition | None:
    """We are the head after a deletion (or the switchover's target): create the node at once,
    without reading it first (the create's reply is the first write's confirmation). Taken
    already: look who has it (perhaps us, after a lost reply)."""
    outcome = _create(ctx, how, position)
    return outcome if outcome is not None else _look(ctx, position, timer, as_head=True)[0]


def _look(
    ctx: Context, position: int | None, timer: _LookTimer, *, as_head: bool = False
) -> tuple[Transition | None, int]:
    """Read the leader node (watching it at the head) and create it if it is free: at once at
    the head (or ``as_head``), after the head's grace behind it (:meth:`_LookTimer.give_grace`).
    ``position``: candidates ahead of us as last read (None: not read)."""
    coordinator = ctx.coordinator
    head = as_head or position == 0
    node = coordinator.leader(watch=head)
    if node is None and not head and not timer.give_grace(ctx):
        ctx.observed_leader = None
        log.debug(
            "the leader node is free: the head has %gs to take it",
            head_grace(ctx),
            extra={"event": "head_grace", "position": position},
        )
        return None, position or 0
    if node is None:
        outcome = _create(ctx, "created the leader node", position)
        if outcome is not None:
            return outcome, position or 0
        # The node exists after all: somebody's create came first, or a lost reply made it ours.
        node = coordinator.leader(watch=head)
    if node is not None or head:
        timer.taken()
    ctx.observed_leader = node
    if node is not None and node.owner == coordinator.session_id():
        # That read was a plain one (a follower may answer it from its own copy): it proves nothing
        # for a lease, so the first write waits for Leader's own fresh confirmation.
        resumed = _become_leader(ctx, node, None, "the leader node already belongs to our session", position)
        return resumed, position or 0
    if node is not None:
        # A standby behind a live leader is healthy only if the leader's work shows (the
        # directory's publish counter moves): a leader that holds the node and publishes nothing
        # must not keep the standbys' failure streaks at bay forever (app.states.progress).
        outcome = progress.judge_leader(ctx, node)
        if outcome is not None:
            return outcome, position or 0
    log.debug(
        "leader is %s",
        node.identity if node is not None else "nobody",
        extra={"event": "attempt", "leader": node.identity if node else None},
    )
    return None, position or 0


def _observe(ctx: Context) -> Transition | None:
    """A replica that never leads (``--no-lead``): a look at the leader for /status, and the
    standbys' judgement of the cluster's progress; never a create."""
    node = ctx.coordinator.leader(watch=False)
    ctx.observed_leader = node
    return None if node is None else progress.judge_leader(ctx, node)


def _create(ctx: Context, how: str, position: int | None) -> Transition | None:
    """Create the leader node: to Leader if this create made it, None if the node exists or a
    pending switchover names another replica (app.states.switchover)."""
    if not switchover.may_create(ctx):
        return None
    acquired_at = ctx.clock.wall().isoformat(timespec="microseconds")
    sent = ctx.now()
    created = ctx.coordinator.create_leader({"identity": ctx.settings.identity, "acquired_at": acquired_at})
    return None if created is None else _become_leader(ctx, created, sent, how, position)


def _become_leader(
    ctx: Context, node: LeaderNode, confirmed_at: float | None, how: str, position: int | None
) -> Transition:
    """To Leader with ``node`` as our term; ``confirmed_at``: when the create that made it was
    sent (its reply confirms the first step), None when a fresh confirmation must come first;
    ``position``: candidates ahead of us as last read (0: in turn; None: not read), for the log."""
    ctx.term = node
    ctx.term_confirmed_at = confirmed_at
    ctx.observed_leader = node
    turn = "" if position == 0 else " out of turn" if position else " (place in the queue unknown)"
    return Transition(StateName.LEADER, f"{how}{turn} (epoch {node.epoch})")
