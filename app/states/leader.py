"""Leader: do the work for exactly as long as we surely lead.

The work is a port (``app.ports.work``): files by default (one per ``leader-timeout``,
``app.adapters.file_work``), or the user's command (``--exec``, ``app.adapters.command_work``).
This state does not know which; it owns the schedule, the confirmations and the way out.

Guarantees:

* The first step is done on entry, then one per ``work.period`` (files: ``leader-timeout``; a
  command: a sixth of the lease, ``app.leases``) on a fixed grid measured from entry: a slow step
  does not push later ones back; missed ticks are skipped, not bunched.
* Before each step it confirms that it still leads: the connection is CONNECTED, and a fresh read
  (``sync`` then read: only a server in touch with the quorum can answer it) shows the leader node
  owned by our session with our epoch. The step may act only within a lease of two thirds of the
  session timeout *the server granted* (not the one asked for: servers clamp it) from the moment
  that request was sent: the server cannot have expired our session before then, because the
  request reset its timer. One confirmation serves one step, and nothing may have woken us between
  the two.
* The read is sent a little before the slot (twice the recent reads' round trip, at least 5 ms), so
  the step starts at the slot itself. The first step of a term needs no read of its own: the
  create that made us leader is its confirmation, under the same lease (a create is a write, so
  only the quorum could answer it). A term resumed because a plain look found the node ours
  confirms with a fresh read first.
* A leader leaves the queue of candidates after its first good step, not before (the first
  write's latency is the hand-over's): the replica behind it, the new head, is woken then and
  watches the leader node, so that our departure wakes it alone and it takes over without reading
  the queue (app.states.attempter). We re-join at the tail when we go back to Attempter.
* Any wake-up (connection change, leader-node watch, stop request, the command's exit) triggers
  the same confirmation. Connection trouble or an unconfirmable read -> Failover; node deleted or
  held by another session -> Attempter; stop requested -> Stopping. The work is stopped
  (``work.stop``: a command's whole process group is dead when it returns) before the state is
  left, and before the node is released whenever we release it (resigning, or the session's close:
  on a stop request Leader closes it itself, before its log lines and the entry into Stopping):
  a successor's work never overlaps ours.
* A step whose lease ran out before its work became visible (a file past its lease) did nothing;
  it is retried at once after a fresh confirmation and counts toward ``max-write-failures`` like
  any failed step. After ``max-write-failures`` consecutive failures the leader resigns (deletes its
  node) and goes to Failover, so that a replica with healthier storage can lead.
* A step refused by the directory's fence (a newer term has written: we are a stale leader that was
  frozen or cut off) did nothing; the leader resigns and goes to Failover. (If ZooKeeper's data was
  wiped, epochs restart low and every leader is fenced: Failover's bound then makes the replicas
  exit loudly; delete ``.election-fence`` and the old leader files after resetting ZooKeeper: the
  fence's floor also counts the files' epochs.)
* A command that exits by itself: the leader resigns so that another replica runs it, and sits out
  :func:`work_backoff` outside the queue (1 s, doubling to 60 s over quick exits in a row). A
  command stopped by its own dead-man (the lease ran out before a confirmation renewed it) makes
  the replica look again (Attempter resumes the term, freshly confirmed, if the node is ours).
"""

from __future__ import annotations

import logging
import math
from collections import deque

from app.leases import lease_of
from app.machine import Context, StateName, Transition
from app.ports.coordination import (
    ConnectionState,
    CoordinationError,
    LeaderNode,
    SwitchoverRequest,
    TermRecord,
)
from app.ports.work import Ended, Outcome, Step

log = logging.getLogger("election.states.leader")

# The confirming read goes out this long before a slot at least (see _ReadAhead), and the lead
# adapts to the slowest of this many recent reads.
MIN_LEAD = 0.005
LEAD_WINDOW = 16


class _ReadAhead:
    """How long before a slot the confirming read is sent: twice the slowest of the recent reads,
    at least MIN_LEAD, at most one period (right after the previous write) and half the lease (so
    that a read that came back in time is still valid at the slot)."""

    def __init__(self, period: float, lease: float) -> None:
        self._period = period
        self._cap = min(period, lease / 2.0)
        self._recent: deque[float] = deque(maxlen=LEAD_WINDOW)

    def limit(self, lease: float) -> float:
        """Cap the lead by ``lease`` (a reconnection may be granted another session timeout);
        return ``lease``."""
        self._cap = min(self._period, lease / 2.0)
        return lease

    def retime(self, period: float, lease: float) -> None:
        """The period changed with the lease (the command's confirmations follow it)."""
        self._period = period
        self.limit(lease)

    def observe(self, read_seconds: float) -> None:
        self._recent.append(read_seconds)

    def seconds(self) -> float:
        slowest = max(self._recent, default=0.0)
        return min(self._cap, max(MIN_LEAD, 2.0 * slowest))


class _Schedule:
    """One term's grid of steps and the confirmation that covers the next one.

    Slots lie on ``start + tick * period`` from the term's entry: a slow step does not push later
    ones back, and missed ticks are skipped, not bunched. A confirmation sent at ``confirmed_at``
    is valid for ``lease``; it covers one step, and none once anything woke us after it.
    """

    def __init__(self, ctx: Context, lease: float) -> None:
        self.lease = lease
        self.period = ctx.work.period(lease)
        self.start = ctx.now()
        self.tick = 0  # index of the next step on the grid
        # The create that made us leader confirms the first step (None: confirm first).
        self.confirmed_at: float | None
        self.confirmed_at, ctx.term_confirmed_at = ctx.term_confirmed_at, None
        self.watching = False  # set by our first confirming read: the node's changes then wake us
        self.woken = False  # something changed since the last confirmation: confirm at once
        self.read_ahead = _ReadAhead(self.period, lease)
        self.failures = 0  # consecutive failed steps
        # After the first good step (off the hand-over's path): out of the queue, the term in the history.
        self.recorded = False

    @property
    def slot(self) -> float:
        return self.start + self.tick * self.period

    def covers(self, instant: float) -> bool:
        """Whether the confirmation is still valid at ``instant``."""
        return self.confirmed_at is not None and instant - self.confirmed_at < self.lease

    def confirmed(self, ctx: Context, sent_at: float) -> None:
        """A confirmation sent at ``sent_at`` came back good. The server may grant another
        timeout on a reconnection (to another server): every confirmation counts with the timeout
        of the connection that answered it, and a command's confirmations follow the lease."""
        self.lease = self.read_ahead.limit(_lease(ctx) or self.lease)  # known: _confirm checked
        period = ctx.work.period(self.lease)
        if period != self.period:
            self.start, self.period, self.tick = self.slot, period, 0
            self.read_ahead.retime(period, self.lease)
        self.watching = True
        self.read_ahead.observe(ctx.now() - sent_at)

    def stepped(self, ctx: Context, step: Step) -> None:
        """One confirmation, one step. A write whose lease ran out published nothing: its slot is
        retried at once, freshly confirmed; otherwise the next slot is the next one still ahead."""
        self.confirmed_at = None
        self.failures = self.failures + 1 if step.outcome is not Outcome.DONE else 0
        if step.outcome is not Outcome.RETRY:
            # At least the next tick: at the slot's own instant (a clock that wakes exactly on the
            # deadline), start + tick * period can round to just short of tick periods from start,
            # and the floor alone would step the same slot again, at once, forever.
            self.tick = max(self.tick + 1, math.floor((ctx.now() - self.start) / self.period) + 1)


# A command that exits within this long of its start counts as a quick exit: the k-th in a row makes
# the replica wait min(WORK_BACKOFF_INITIAL x 2**(k-1), WORK_BACKOFF_MAX) before it is a candidate again.
WORK_BACKOFF_INITIAL = 1.0
WORK_BACKOFF_MAX = 60.0
WORK_BACKOFF_RESET = 60.0


def work_backoff(streak: int) -> float:
    """How long a replica whose work exited by itself ``streak`` times in a row (each run shorter
    than ``WORK_BACKOFF_RESET``) waits before it rejoins the queue: 1 s, 2 s, 4 s, ... 60 s. So one
    replica begins at most 1 + log2(T + 1) terms in its first T seconds of quick exits (T < 60 s:
    7 in the first minute) and then one a minute; N replicas at most N times that."""
    return float(min(WORK_BACKOFF_MAX, WORK_BACKOFF_INITIAL * 2 ** max(streak - 1, 0)))


def _let_go(ctx: Context, term: LeaderNode, reason: str, kind: str) -> str | None:
    """Give the node up on purpose: stop the work first (the next leader's must not overlap ours),
    record the term's end as ``kind``, delete the node and re-join the queue at the tail (the
    others go first). Return why the release failed, or None."""
    ctx.work.stop(reason)
    _record_end(ctx, term, kind)
    try:
        ctx.coordinator.resign(term)
        ctx.coordinator.leave_queue()
    except CoordinationError as exc:
        return f"{reason}; could not resign: {exc}"
    return None


def _leave_queue(ctx: Context, term: LeaderNode) -> None:
    """Leave the queue of candidates once our first write is out: the replica behind us, woken now
    (when we are elected, not when we leave), becomes the head and watches the leader node, so our
    departure later wakes it alone and it creates the node without reading the queue. One delete,
    best effort (the adapter's session close removes the node anyway)."""
    ctx.coordinator.leave_queue()
    log.debug("left the queue of candidates", extra={"event": "left_queue", "epoch": term.epoch})


def _record_end(ctx: Context, term: LeaderNode, reason: str) -> None:
    """Tell the history why our term ends (not waited for; before the node is released). A term
    that ends before its first good step (its storage failed from the start, it was fenced, asked
    to hand over at once) is put in first, waited for: otherwise the history would lose it and its
    successor would count the end of the term before it."""
    _record_begin(ctx, term)
    ended = ctx.clock.wall().isoformat(timespec="microseconds")
    ctx.coordinator.end_term_record(term.epoch, reason, ended)


def _record_begin(ctx: Context, term: LeaderNode) -> None:
    """Our term into the history, once per term (the previous one's end is counted by its
    reason). Best effort."""
    if ctx.recorded_epoch == term.epoch:
        return
    began = term.acquired_at or ctx.clock.wall().isoformat(timespec="microseconds")
    try:
        previous = ctx.coordinator.begin_term_record(TermRecord(term.epoch, ctx.settings.identity, began))
    except CoordinationError as exc:
        log.warning("could not record the term in the history: %s", exc, extra={"event": "history_error"})
        return
    ctx.recorded_epoch = term.epoch
    if previous is not None:  # None: the first term ever, or ours resumed
        ctx.metrics.leadership_changed(previous.reason or "expired")


def _lease(ctx: Context) -> float | None:
    """How long a confirmation stays valid: LEASE_FRACTION of the session timeout the server
    granted on the current connection (never the one we asked for: the server clamps it). None
    when that is unknown: then nothing may be done as leader."""
    granted = ctx.coordinator.granted_session_timeout()
    return None if granted is None else lease_of(granted)


class Leader:
    name = StateName.LEADER

    def run(self, ctx: Context) -> Transition:
        term = ctx.term
        if term is None:
            return Transition(StateName.ATTEMPTER, "entered Leader without a term")
        ctx.metrics.leadership_acquired(term.epoch)
        log.info(
            "leading with epoch %d",
            term.epoch,
            extra={"event": "leadership_acquired", "epoch": term.epoch},
        )
        reason = "leadership ended by an error"
        outcome_to: StateName | None = None
        try:
            lease = _lease(ctx)
            if lease is None:
                outcome = self._resign(ctx, term, "the session timeout the server granted is unknown")
            else:
                outcome = self._hold(ctx, term, lease)
            reason, outcome_to = outcome.reason, outcome.to
        finally:
            # Whatever ended the term, the work stops before anything else happens (Stopping
            # releases the node only after this returns: a successor's work never overlaps ours).
            ctx.work.stop(reason)
            if outcome_to is StateName.STOPPING:
                _record_end(ctx, term, "graceful")  # sent before the close, so it lands first
                # Release the node now: the session's close deletes it, so the successor's take-over
                # starts here, not after the log lines, the metrics and the entry into Stopping
                # (whose close then finds the session closed).
                ctx.coordinator.close()
            ctx.term = None
            ctx.metrics.leadership_lost()
        log.info(
            "stopped leading epoch %d: %s",
            term.epoch,
            outcome.reason,
            extra={"event": "leadership_lost", "epoch": term.epoch, "reason": outcome.reason},
        )
        return outcome

    def _hold(self, ctx: Context, term: LeaderNode, lease: float) -> Transition:
        """Lead one term until something ends it: confirm, wait for the slot, step, account."""
        ctx.work.begin(term.epoch)
        plan = _Schedule(ctx, lease)
        while True:
            leave = self._interrupted(ctx, term)
            if leave is not None:
                return leave
            if plan.confirmed_at is None:
                if not self._wait_to_confirm(ctx, plan):
                    continue  # asked to stop meanwhile
                leave = self._confirm_ahead(ctx, term, plan)
                if leave is not None:
                    return leave
            if not self._wait_for_slot(ctx, plan):
                continue  # the confirmation does not cover the slot: confirm again
            leave = self._step(ctx, term, plan)
            if leave is not None:
                return leave

    def _interrupted(self, ctx: Context, term: LeaderNode) -> Transition | None:
        """Where to go if a stop was requested or the work ended by itself."""
        if ctx.stop_reason is not None:
            return Transition(StateName.STOPPING, ctx.stop_reason)
        ended = ctx.work.ended()
        return None if ended is None else self._work_ended(ctx, term, ended)

    @staticmethod
    def _wait_to_confirm(ctx: Context, plan: _Schedule) -> bool:
        """Wait until the confirming read is due: ahead of the slot by the read-ahead, so that the
        read's round trip does not delay the step; at once after a wake-up (anything changed) or
        before the first read (nothing watches the node yet). False if a stop was requested."""
        if plan.watching and not plan.woken:
            ctx.wait_until(plan.slot - plan.read_ahead.seconds())
            if ctx.stop_reason is not None:
                return False
        return True

    def _confirm_ahead(self, ctx: Context, term: LeaderNode, plan: _Schedule) -> Transition | None:
        """Confirm that we still lead (:meth:`_confirm`), timed from the moment the read was sent;
        where to go if we do not."""
        sent_at = ctx.now()
        plan.confirmed_at, plan.woken = sent_at, False
        ctx.clear_wakeup()
        leave = self._confirm(ctx, term)
        if leave is None:
            plan.confirmed(ctx, sent_at)
        return leave

    @staticmethod
    def _wait_for_slot(ctx: Context, plan: _Schedule) -> bool:
        """Wait for the slot; True if the confirmation still covers the step there. False (the
        confirmation dropped) if it is too old by the slot (the read that set our watch, early in a
        long period: confirm again ahead of the slot instead of late at it), if anything woke us
        meanwhile, or if it aged out while we waited."""
        if not plan.covers(plan.slot):
            plan.confirmed_at = None
            return False
        plan.woken = ctx.wait_until(plan.slot)
        if plan.woken or not plan.covers(ctx.now()):
            plan.confirmed_at = None
            return False
        return True

    def _step(self, ctx: Context, term: LeaderNode, plan: _Schedule) -> Transition | None:
        """Do one step of the work inside the confirmation's lease and account for it; where to go
        if the term must end. The term goes into the history after its first good step (tried
        once: the history is best effort)."""
        assert plan.confirmed_at is not None  # _wait_for_slot checked
        step = ctx.work.step(term.epoch, valid_until=plan.confirmed_at + plan.lease)
        if step.outcome is Outcome.DONE and not plan.recorded:
            plan.recorded = True
            _leave_queue(ctx, term)
            _record_begin(ctx, term)
        plan.stepped(ctx, step)
        return self._judge_step(ctx, term, step, plan.failures)

    @staticmethod
    def _hand_over(ctx: Context, term: LeaderNode, request: SwitchoverRequest) -> Transition:
        """An operator asked this term to hand over: stop the work (a write in progress has
        completed or vanished; a command's group is dead), record the end, delete the node and
        re-join the queue at the tail. Only the target (app.states.switchover) takes it."""
        target = request.to or "the next candidate"
        reason = f"switchover to {target} requested"
        failed = _let_go(ctx, term, reason, "switchover")
        if failed is not None:
            return Transition(StateName.FAILOVER, failed)
        log.info(
            "handed over to %s",
            target,
            extra={"event": "switchover", "epoch": term.epoch, "to": request.to, "request": request.id},
        )
        return Transition(StateName.ATTEMPTER, f"{reason}; handed over")

    @classmethod
    def _judge_step(cls, ctx: Context, term: LeaderNode, step: Step, failures: int) -> Transition | None:
        """Account for one step (``failures``: consecutive failed steps, this one included); where
        to go if the term must end (fenced; too many failures)."""
        if step.outcome is Outcome.FENCED:
            return cls._resign(ctx, term, step.why, "fenced")
        if step.outcome is Outcome.DONE:
            ctx.work_done()
            if step.order is not None:
                # The directory's publish counter as of our own file: as a standby later, only a
                # newer publish counts as the cluster's progress (app.states.progress).
                ctx.progress_seen = step.order
            return None
        ctx.work_failed(step.why)
        if failures >= ctx.settings.max_write_failures:
            return cls._resign(ctx, term, f"{failures} consecutive write failures")
        return None

    @staticmethod
    def _work_ended(ctx: Context, term: LeaderNode, ended: Ended) -> Transition:
        """The work stopped without being asked to. Stopped by its own dead-man (the lease ran out
        unconfirmed): look again (Attempter resumes the term, after a fresh confirmation, if the
        node is still ours). Exited by itself: resign so that another replica runs it, and rejoin
        the queue only after :func:`work_backoff` (a command that crashes at once must not spin
        leadership round the cluster)."""
        if ended.stopped:
            ctx.work.stop("the lease ran out unconfirmed")
            return Transition(StateName.ATTEMPTER, "the lease ran out unconfirmed: the work was stopped")
        quick = ended.ran_seconds < WORK_BACKOFF_RESET
        ctx.work_exit_streak = ctx.work_exit_streak + 1 if quick else 1
        backoff = work_backoff(ctx.work_exit_streak)
        ctx.rejoin_at = ctx.now() + backoff
        how = "finished" if ended.succeeded else f"exited with {ended.code}"
        reason = f"the work {how} after {ended.ran_seconds:.3g}s"
        # what it left in its process group goes too, before the node
        failed = _let_go(ctx, term, reason, "work_exited")
        if failed is not None:
            return Transition(StateName.FAILOVER, failed)
        return Transition(
            StateName.ATTEMPTER, f"{reason}; resigned leadership; a candidate again in {backoff:g}s"
        )

    @staticmethod
    def _confirm(ctx: Context, term: LeaderNode) -> Transition | None:
        """None if we surely still lead; otherwise where to go."""
        coordinator = ctx.coordinator
        state = coordinator.state()
        if state is not ConnectionState.CONNECTED:
            return Transition(StateName.FAILOVER, f"ZooKeeper connection {state.value}")
        request = coordinator.switchover_request()
        if request is not None and request.from_epoch == term.epoch:
            return Leader._hand_over(ctx, term, request)
        if request is not None and request.from_epoch != term.epoch:
            # Meant for another term (before ours; or after it, written by hand or left over from
            # a ZooKeeper reset): void, and binding nobody once cleared.
            coordinator.clear_switchover(request.id)
        try:
            # fresh: a follower cut off from the quorum must not be able to confirm us.
            node = coordinator.leader(watch=True, fresh=True)
        except CoordinationError as exc:
            return Transition(StateName.FAILOVER, f"cannot confirm leadership: {exc}")
        ctx.observed_leader = node
        if node is None:
            return Transition(StateName.ATTEMPTER, "the leader node was deleted")
        if node.owner != coordinator.session_id() or node.epoch != term.epoch:
            return Transition(
                StateName.ATTEMPTER,
                f"the leader node now belongs to {node.identity or 'another session'} (epoch {node.epoch})",
            )
        if _lease(ctx) is None:
            return Leader._resign(ctx, term, "the session timeout the server granted is unknown")
        return None

    @staticmethod
    def _resign(ctx: Context, term: LeaderNode, reason: str, kind: str = "resigned") -> Transition:
        """Give the node up, so that another replica can lead, and heal through Failover (whose
        backoff keeps this replica from grabbing the node straight back). ``kind`` goes into the
        election's history as the term's end."""
        ctx.work_failed(f"resigned leadership: {reason}")
        failed = _let_go(ctx, term, reason, kind)
        return Transition(StateName.FAILOVER, failed or f"{reason}; resigned leadership")
