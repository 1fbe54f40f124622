"""The coordination port: what the states need from ZooKeeper, in the project's own words.

The adapter (``app.adapters.kazoo_coordinator``) translates kazoo's states and exceptions into these;
nothing above it imports kazoo.

Connection states and what each lets a replica assume (after kazoo's ``protocol/states.py``):

* ``CONNECTED``: the session is live; nodes owned by it are ours.
* ``SUSPENDED``: the connection dropped; the session may still be live on the server, or may have
  expired there. A replica must not assume it still holds the leader node: it stops leader work.
* ``LOST``: the server expired the session; its ephemeral nodes are gone. A new session follows when
  the client reconnects.
* ``CLOSED``: not started, failed to start, or closed by us.

The queue of candidates: the standbys, in the order they joined. Each replica in Attempter holds an
ephemeral sequential node under ``<election-path>/candidates`` and watches only the one just ahead
of it; only the head watches the leader node. A leader leaves the queue once its first write is out
(and re-joins at the tail when it is a standby again), so the head is always the next leader, and
the leader's departure (its session's close deletes the leader node) wakes the head alone, which
creates the node at once: a hand-over wakes one replica and costs one create, however many wait,
and no read of the queue on the way (:meth:`Coordinator.take_over_signal`). The queue only decides
who tries first: the leader node alone says who leads. A replica behind the head that finds the
node free gives the head a grace before it creates it (app.states.attempter).

Error handling: every call that talks to the server is bounded by the adapter's operation timeout and
raises :class:`CoordinationError` (or a subclass) on any failure; it never blocks forever.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class ConnectionState(enum.Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


class CoordinationError(Exception):
    """ZooKeeper could not be reached or refused an operation; the message says which."""


class SwitchoverBusyError(CoordinationError):
    """Another switchover request is pending: one at a time."""


class PermissionDeniedError(CoordinationError):
    """The server refused a write for want of rights: the node's ACL names credentials we lack
    (``--zk-auth`` missing or other). A mistake of the caller's, not an outage."""


@dataclass(frozen=True)
class SwitchoverRequest:
    """An operator's request that the leader of ``from_epoch`` hand over (``election switchover``).

    ``to`` names the target (None: the next in the queue). Any other leader ignores it (and clears
    it); candidates stop deferring to the target ``expires_in`` seconds after they first saw it."""

    id: str
    from_epoch: int
    from_identity: str
    to: str | None
    requested_at: str
    expires_in: float


@dataclass(frozen=True)
class TermRecord:
    """One leadership term in the election's history (``<election-path>/history``).

    ``reason`` says why it ended: ``graceful`` (its replica stopped), ``switchover``, ``resigned``
    (write failures, an unknown session timeout), ``fenced``, ``work_exited``, or ``expired`` (its
    session ended without a word: a crash, a cut; written by its successor). None while it lasts."""

    epoch: int
    identity: str
    began: str
    ended: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class LeaderNode:
    """The leader node as a look at it found it.

    ``owner`` is the ZooKeeper session that holds it; ``epoch`` is its creation zxid (czxid), which
    grows with every new node and so with every leadership term: the fencing token written into files.
    ``identity`` and ``acquired_at`` come from the node's data ("" when unreadable: an operator may
    have created the node by hand).
    """

    owner: int
    epoch: int
    identity: str = ""
    acquired_at: str = ""


@dataclass(frozen=True)
class Member:
    """A connected replica, from its ephemeral member node."""

    session: int
    data: dict[str, Any]


class Coordinator(Protocol):
    """One ZooKeeper session used by one replica."""

    requested_session_timeout: float
    """Seconds of session timeout we ask the server for. The server may grant less (or more): it
    clamps every request to its ``[minSessionTimeout, maxSessionTimeout]``, by default
    ``[2, 20] x tickTime``. Never use this for a lease: use :meth:`granted_session_timeout`."""

    def granted_session_timeout(self) -> float | None:
        """Seconds the server granted on the current connection: how long it keeps our session
        without hearing from us. Learned again on every (re)connection (another server may grant
        another value). None while not connected, or if the client could not learn it: then no
        lease can be computed and the replica must not lead. Local, never blocks."""
        ...

    def start(self) -> None:
        """Begin connecting, without blocking. The client then keeps (re)connecting by itself, with
        backoff, until :meth:`close`; a callback from :meth:`subscribe` reports each change."""
        ...

    def state(self) -> ConnectionState:
        """The connection state as last reported by the client; local, never blocks."""
        ...

    def session_id(self) -> int | None:
        """The current session id, or None when there is none."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from another thread; it must only record and wake) on every connection
        state change and every change of the leader node a watch was set on."""
        ...

    def prepare(self, identity: str, info: dict[str, Any]) -> None:
        """Create the election path if missing and register this replica as a member (once per
        session)."""
        ...

    def enter_queue(self) -> None:
        """Join the queue of candidates (once per session): an ephemeral sequential node."""
        ...

    def queue_position(self) -> int:
        """How many candidates are ahead of us (0: we are the head). When some are, watch (only)
        the one just ahead, and be told through the :meth:`subscribe` callback when it leaves."""
        ...

    def take_over_signal(self) -> bool:
        """True, once, when the leader node we watched (at the head) was deleted since the last call:
        the node may be free for us now. A hint only (the create decides); connection changes never
        set it; local, never blocks."""
        ...

    def queue_moved(self) -> bool:
        """True, once, when the candidate just ahead of us left since the last call (it became the
        leader and left the queue, or it went away): we may be the head now. Local, never blocks."""
        ...

    def leave_queue(self) -> None:
        """Leave the queue (best effort): a leader once its first write is out, a resigning replica;
        each re-joins at the tail when it is a candidate again."""
        ...

    def leader(self, *, watch: bool, fresh: bool = False) -> LeaderNode | None:
        """Look at the leader node (a read, no write); with ``watch`` and a node found, be told
        (through the :meth:`subscribe` callback) when it is changed or deleted. A free node sets no
        watch: whoever finds it free creates it at once.

        With ``fresh``, the answer is one that only a server in touch with the quorum can give: a
        server in an ensemble answers plain reads from its own copy, and a follower cut off from the
        quorum leader goes on answering them (up to ``syncLimit x tickTime``) after the quorum may
        have expired our session. A leader confirms with ``fresh`` reads only."""
        ...

    def create_leader(self, data: dict[str, Any]) -> LeaderNode | None:
        """Try to create the ephemeral leader node (one request). Return it when this create made it:
        the reply shows our session held it when the server processed the request. None when the
        node exists, whoever holds it (our own session too, after a create whose reply was lost):
        look with :meth:`leader` to know."""
        ...

    def resign(self, node: LeaderNode) -> None:
        """Delete the leader node if it is still ``node`` and ours, so that another replica can lead.
        A node that is gone or someone else's is left alone."""
        ...

    def members(self) -> list[Member]:
        """The replicas connected now, in registration order."""
        ...

    def switchover_request(self) -> SwitchoverRequest | None:
        """The pending switchover request as this replica's watch last read it (None: none). The
        read is re-armed on every change and the subscribers are told; local, never blocks."""
        ...

    def switchover_settled(self) -> bool:
        """False from the moment a watch reported a change of the request until the re-read came
        back: a candidate must not create the leader node meanwhile. ZooKeeper delivers watch events
        in the order of the changes, so a request written before the leader node went is known
        (at least as "not settled") before that deletion is; local, never blocks."""
        ...

    def request_switchover(self, request: SwitchoverRequest) -> None:
        """Write ``request`` if none is pending (a conditional set); SwitchoverBusyError if one is."""
        ...

    def clear_switchover(self, request_id: str) -> None:
        """Remove the pending request if it is still ``request_id`` (best effort)."""
        ...

    def history(self) -> list[TermRecord]:
        """The last terms, oldest first (a read)."""
        ...

    def begin_term_record(self, record: TermRecord) -> TermRecord | None:
        """Append our term to the history (once per epoch): the previous term, if nobody recorded
        its end, is closed as ``expired`` at our beginning. Return the previous term as now
        recorded (None: the first term ever, or ours was already there)."""
        ...

    def end_term_record(self, epoch: int, reason: str, ended: str) -> None:
        """Record why our term ``epoch`` ended, without waiting for the answer (it goes out before
        a following resign or close, which the server then processes after it). Best effort."""
        ...

    def close(self) -> None:
        """End the session. The server deletes its ephemeral nodes (the leader node, if ours, and our
        member node) in one transaction, so a waiting replica takes over at once. Idempotent."""
        ...
