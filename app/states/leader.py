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
* The lease holds until the file is published, not only until the write starts: the storage
  publishes nothing once ``confirmed_at + lease`` has passed (checked under the fence lock, just
  before the file becomes visible). Such a write is counted (``reason="lease_expired"``), does not
  advance the sequence, and is retried at once after a fresh confirmation, without waiting for the
  next slot. It counts toward ``max-write-failures`` like any failed write.
* After each write, retention keeps the newest ``storage-capacity`` of our own files, under the same
  confirmation as the write: past its lease it deletes nothing (counted, retried at the next tick).
  A failed deletion is counted (``reason="retention"``) but is not a failed write.
* A failed write is logged and counted (``reason="storage"``); the next tick tries again. After
  ``max-write-failures`` consecutive failures the leader resigns (deletes its node) and goes to
  Failover, so that a replica with healthier storage can lead.
* A file that was published but whose directory fsync failed is written: the sequence advances, it
  counts as a file written and as ``reason="directory_fsync"`` (its durability across a crash of the
  file server is in doubt), and it resets the failure count like any written file.
* A write or a retention refused by the directory's fence (a newer term has written: we are a stale
  leader that was frozen or cut off) writes or deletes nothing, is counted, and the leader resigns
  and goes to Failover. (If ZooKeeper's data was wiped, epochs restart low and every leader is
  fenced: Failover's bound then makes the replicas exit loudly; delete ``.election-fence`` and the
  old leader files after resetting ZooKeeper: the fence's floor also counts the files' epochs.)
* Sequence numbers count within a term. A term resumed with the same node (our session survived a
  short disconnection, so Attempter found the node still ours) continues its numbering.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque

from app.machine import Context, StateName, Transition
from app.ports.coordination import ConnectionState, CoordinationError, LeaderNode
from app.ports.storage import FencedError, LeaseExpiredError, Record, StorageError

log = logging.getLogger("election.states.leader")

# Fraction of the session timeout a confirmation stays valid: kazoo itself declares the connection
# suspended after 2/3 of it without an answer, so we never act on older knowledge than that.
LEASE_FRACTION = 2.0 / 3.0
# The confirming read goes out this long before a slot at least (see _Lead), and the lead adapts to
# the slowest of this many recent reads.
MIN_LEAD = 0.005
LEAD_WINDOW = 16


class _Done(enum.Enum):
    """What became of one write."""

    WRITTEN = "written"  # published (its directory fsync may have failed: counted, still written)
    FAILED = "failed"  # nothing published; the next slot tries again
    LEASE_EXPIRED = "lease_expired"  # nothing published; confirm again and retry at once


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


def _write_failed(ctx: Context, reason: str, why: str, message: str, sequence: int) -> None:
    """Count, log and report (``/readyz`` says ``why``) a write that published nothing."""
    ctx.metrics.write_failed(reason)
    ctx.work_failed(why)
    level = logging.WARNING if reason == "lease_expired" else logging.ERROR  # lease: confirm and retry
    log.log(level, "%s", message, extra={"event": "write_error", "reason": reason, "sequence": sequence})


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
            ctx.work_running = False
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
            done = self._work(ctx, term, sequence, valid_until=confirmed_at + lease)
            if isinstance(done, Transition):
                return done  # fenced
            if done is _Done.WRITTEN:
                failures = 0
                ctx.work_done()
                ctx.work_running = True  # the term's work runs from its first file (/leader)
                sequence += 1
                ctx.next_sequence = (term.epoch, sequence)
            else:
                failures += 1
                if failures >= ctx.settings.max_write_failures:
                    return self._resign(ctx, term, f"{failures} consecutive write failures")
            confirmed_at = None  # one confirmation, one write
            # A write whose lease ran out published nothing: retry its slot at once, freshly confirmed.
            retry = done is _Done.LEASE_EXPIRED
            tick = tick if retry else math.floor((ctx.now() - start) / period) + 1

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

    @classmethod
    def _fenced(cls, ctx: Context, term: LeaderNode, exc: FencedError) -> Transition:
        ctx.metrics.write_fenced()
        log.error(
            "fenced: %s; stepping down without writing or deleting anything more",
            exc,
            extra={"event": "fenced", "epoch": term.epoch, "newer_epoch": exc.newer},
        )
        return cls._resign(ctx, term, f"fenced: a newer term ({exc.newer}) has written")

    @classmethod
    def _work(cls, ctx: Context, term: LeaderNode, sequence: int, valid_until: float) -> _Done | Transition:
        """One tick's work under one confirmation: the file, then retention if it was written."""
        done = cls._write(ctx, term, sequence, valid_until)
        if done is _Done.WRITTEN:
            return cls._retain(ctx, term, valid_until) or done
        return done

    @classmethod
    def _write(cls, ctx: Context, term: LeaderNode, sequence: int, valid_until: float) -> _Done | Transition:
        """Write one file, published only before ``valid_until``; count and log what became of it.
        Fenced: the way out (resigned). A file published without its directory fsync is written
        (and counted as a ``directory_fsync`` error too)."""
        record = Record(
            identity=ctx.settings.identity,
            epoch=term.epoch,
            sequence=sequence,
            written_at=ctx.clock.wall().isoformat(timespec="microseconds").replace("+00:00", "Z"),
        )
        try:
            written = ctx.storage.write(record, valid_until=valid_until)
        except FencedError as exc:
            return cls._fenced(ctx, term, exc)
        except LeaseExpiredError as exc:
            why = f"leader write not published within its lease: {exc}"
            message = f"write not published: {exc}; confirming leadership again"
            _write_failed(ctx, "lease_expired", why, message, sequence)
            return _Done.LEASE_EXPIRED
        except StorageError as exc:
            _write_failed(ctx, "storage", f"leader write failed: {exc}", f"write failed: {exc}", sequence)
            return _Done.FAILED
        ctx.metrics.file_written()
        # The directory's publish counter as of our own file: as a standby later, only a newer
        # publish counts as the cluster's progress (app.states.progress).
        ctx.progress_seen = written.order
        log.info(
            "wrote %s",
            written.name,
            extra={
                "event": "file_written",
                "file": written.name,
                "sequence": sequence,
                "order": written.order,
            },
        )
        if not written.synced:
            ctx.metrics.write_failed("directory_fsync")
            log.error(
                "wrote %s, but the directory fsync after it failed: a crash of the file server may lose it",
                written.name,
                extra={"event": "write_error", "reason": "directory_fsync", "file": written.name},
            )
        return _Done.WRITTEN

    @classmethod
    def _retain(cls, ctx: Context, term: LeaderNode, valid_until: float) -> Transition | None:
        """Apply retention under the write's confirmation. Fenced: the way out (resigned). Anything
        else is counted and logged; the next tick retries (a failed deletion is not a failed write)."""
        capacity = ctx.settings.storage_capacity
        try:
            deleted = ctx.storage.retain(capacity, epoch=term.epoch, valid_until=valid_until)
        except FencedError as exc:
            return cls._fenced(ctx, term, exc)
        except LeaseExpiredError as exc:
            ctx.metrics.write_failed("lease_expired")
            log.warning(
                "retention skipped: %s", exc, extra={"event": "write_error", "reason": "lease_expired"}
            )
            return None
        except StorageError as exc:
            ctx.metrics.write_failed("retention")
            log.error("retention failed: %s", exc, extra={"event": "write_error", "reason": "retention"})
            return None
        if deleted:
            ctx.metrics.files_deleted(len(deleted))
            log.info(
                "deleted %d old file(s)",
                len(deleted),
                extra={"event": "files_deleted", "files": deleted},
            )
        return None
