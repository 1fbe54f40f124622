"""Leader: do the work (one file per ``leader-timeout``) for exactly as long as we surely lead.

Guarantees:

* The first file is written on entry, then one per ``leader-timeout`` on a fixed grid measured from
  entry: a slow write does not push later ones back; missed ticks are skipped, not bunched.
* Before each write it confirms that it still leads: the connection is CONNECTED, and a fresh read
  (``sync`` then read: only a server in touch with the quorum can answer it) shows the leader node
  owned by our session with our epoch. The work must be done within a lease of two thirds of the
  session timeout *the server granted* (not the one asked for: servers clamp it) from the moment
  that request was sent: the server cannot have expired our session before then, because the
  request reset its timer. One confirmation serves one write, and nothing may have woken us between
  the two.
* The read is sent a little before the slot (twice the recent reads' round trip, at least 5 ms), so
  the write starts at the slot itself. The first write of a term needs no read of its own: the
  create that made us leader is its confirmation, under the same lease (a create is a write, so
  only the quorum could answer it). A term resumed because a plain look found the node ours
  confirms with a fresh read first.
* Any wake-up (connection change, leader-node watch, stop request) triggers the same confirmation.
  Connection trouble or an unconfirmable read -> Failover; node deleted or held by another session
  -> Attempter; stop requested -> Stopping. Leader work stops at once in every case.
* After each write, retention keeps the newest ``storage-capacity`` of our own files.
* A failed write is logged and counted; the next tick tries again. After ``max-write-failures``
  consecutive failures the leader resigns (deletes its node) and goes to Failover, so that a replica
  with healthier storage can lead.
* A write refused by the directory's fence (a newer term has written: we are a stale leader that was
  frozen or cut off) writes nothing, is counted, and the leader resigns and goes to Failover. (If
  ZooKeeper's data was wiped, epochs restart low and every leader is fenced: Failover's bound then
  makes the replicas exit loudly; delete ``.election-fence`` after resetting ZooKeeper.)
* Sequence numbers count within a term. A term resumed with the same node (our session survived a
  short disconnection, so Attempter found the node still ours) continues its numbering.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from app.machine import Context, StateName, Transition
from app.ports.coordination import ConnectionState, CoordinationError, LeaderNode
from app.ports.storage import FencedError, Record, StorageError

log = logging.getLogger("election.states.leader")

# Fraction of the session timeout a confirmation stays valid: kazoo itself declares the connection
# suspended after 2/3 of it without an answer, so we never act on older knowledge than that.
LEASE_FRACTION = 2.0 / 3.0
# The confirming read goes out this long before a slot at least (see _Lead), and the lead adapts to
# the slowest of this many recent reads.
MIN_LEAD = 0.005
LEAD_WINDOW = 16


class _Lead:
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

    def observe(self, read_seconds: float) -> None:
        self._recent.append(read_seconds)

    def seconds(self) -> float:
        slowest = max(self._recent, default=0.0)
        return min(self._cap, max(MIN_LEAD, 2.0 * slowest))


def _lease(ctx: Context) -> float | None:
    """How long a confirmation stays valid: LEASE_FRACTION of the session timeout the server
    granted on the current connection (never the one we asked for: the server clamps it). None
    when that is unknown: then nothing may be done as leader."""
    granted = ctx.coordinator.granted_session_timeout()
    return None if granted is None else granted * LEASE_FRACTION


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
        try:
            lease = _lease(ctx)
            if lease is None:
                outcome = self._resign(ctx, term, "the session timeout the server granted is unknown")
            else:
                outcome = self._lead(ctx, term, lease)
        finally:
            ctx.term = None
            ctx.metrics.leadership_lost()
        log.info(
            "stopped leading epoch %d: %s",
            term.epoch,
            outcome.reason,
            extra={"event": "leadership_lost", "epoch": term.epoch, "reason": outcome.reason},
        )
        return outcome

    def _lead(self, ctx: Context, term: LeaderNode, lease: float) -> Transition:
        ctx.storage.begin_term()
        period = ctx.settings.leader_timeout
        start = ctx.now()
        tick = 0  # index of the next write on the grid start + k * period
        resumed = ctx.next_sequence
        sequence = resumed[1] if resumed is not None and resumed[0] == term.epoch else 0
        failures = 0  # consecutive failed writes
        # The create that made us leader confirms the first write (None: confirm first).
        confirmed_at, ctx.term_confirmed_at = ctx.term_confirmed_at, None
        watching = False  # set by our first confirming read: the node's changes then wake us
        lead = _Lead(period, lease)
        woken = False
        while True:
            if ctx.stop_reason is not None:
                return Transition(StateName.STOPPING, ctx.stop_reason)
            slot = start + tick * period
            if confirmed_at is None:
                if watching and not woken:
                    # Confirm ahead of the slot, so that the read's round trip does not delay the
                    # write; a wake-up meanwhile (anything changed) makes us confirm at once.
                    ctx.wait_until(slot - lead.seconds())
                    if ctx.stop_reason is not None:
                        continue
                confirmed_at = ctx.now()
                woken = False
                ctx.clear_wakeup()
                verdict = self._confirm(ctx, term)
                if verdict is not None:
                    return verdict
                # The server may grant another timeout on a reconnection (to another server):
                # every confirmation counts with the timeout of the connection that answered it.
                lease = lead.limit(_lease(ctx) or lease)  # known: _confirm checked
                watching = True
                lead.observe(ctx.now() - confirmed_at)
            if slot - confirmed_at >= lease:
                # Too old by the slot (the read that set our watch, early in a long period):
                # confirm again ahead of the slot instead of late at it.
                confirmed_at = None
                continue
            woken = ctx.wait_until(slot)
            if woken or ctx.now() - confirmed_at >= lease:
                # Something changed since the read, or the read is too old to act on: look again.
                confirmed_at = None
                continue
            try:
                self._write(ctx, term, sequence)
            except FencedError as exc:
                ctx.metrics.write_fenced()
                log.error(
                    "fenced: %s; wrote nothing, stepping down",
                    exc,
                    extra={"event": "fenced", "epoch": term.epoch, "newer_epoch": exc.newer},
                )
                return self._resign(ctx, term, f"fenced: a newer term ({exc.newer}) has written")
            except StorageError:
                failures += 1
                if failures >= ctx.settings.max_write_failures:
                    return self._resign(ctx, term, f"{failures} consecutive write failures")
            else:
                failures = 0
                ctx.work_done()
                sequence += 1
                ctx.next_sequence = (term.epoch, sequence)
            confirmed_at = None  # one confirmation, one write
            tick = math.floor((ctx.now() - start) / period) + 1

    @staticmethod
    def _confirm(ctx: Context, term: LeaderNode) -> Transition | None:
        """None if we surely still lead; otherwise where to go."""
        coordinator = ctx.coordinator
        state = coordinator.state()
        if state is not ConnectionState.CONNECTED:
            return Transition(StateName.FAILOVER, f"ZooKeeper connection {state.value}")
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
    def _resign(ctx: Context, term: LeaderNode, reason: str) -> Transition:
        """Give the node up, so that another replica can lead, and heal through Failover (whose
        backoff keeps this replica from grabbing the node straight back)."""
        ctx.work_failed(f"resigned leadership: {reason}")
        try:
            ctx.coordinator.resign(term)
            ctx.coordinator.leave_queue()  # re-join at the tail: the others go first
        except CoordinationError as exc:
            return Transition(StateName.FAILOVER, f"{reason}; could not resign: {exc}")
        return Transition(StateName.FAILOVER, f"{reason}; resigned leadership")

    @staticmethod
    def _write(ctx: Context, term: LeaderNode, sequence: int) -> None:
        """Write one file and apply retention; raise StorageError (FencedError) after counting it."""
        record = Record(
            identity=ctx.settings.identity,
            epoch=term.epoch,
            sequence=sequence,
            written_at=ctx.clock.wall().isoformat(timespec="microseconds").replace("+00:00", "Z"),
        )
        try:
            name = ctx.storage.write(record)
        except FencedError:
            raise
        except StorageError as exc:
            ctx.metrics.write_failed()
            ctx.work_failed(f"leader write failed: {exc}")
            log.error("write failed: %s", exc, extra={"event": "write_error", "sequence": sequence})
            raise
        ctx.metrics.file_written()
        log.info("wrote %s", name, extra={"event": "file_written", "file": name, "sequence": sequence})
        try:
            deleted = ctx.storage.retain(ctx.settings.storage_capacity)
        except StorageError as exc:
            # The file is written; a failed deletion is retried at the next tick, not a write failure.
            ctx.metrics.write_failed()
            log.error("retention failed: %s", exc, extra={"event": "write_error"})
            return
        if deleted:
            ctx.metrics.files_deleted(len(deleted))
            log.info(
                "deleted %d old file(s)",
                len(deleted),
                extra={"event": "files_deleted", "files": deleted},
            )
