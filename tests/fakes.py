"""Fakes for the ports, for unit tests of the states and the machine (never for integration tests).

* :class:`FakeClock`: virtual time in the style of trio's MockClock with autojump. ``wait`` jumps
  straight to the earlier of its deadline and the next scheduled callback, runs due callbacks
  (which may set the event), and returns; no real time passes. Tests script the world with
  ``call_at``/``call_later``.
* :class:`FakeZooKeeper` + :class:`FakeCoordinator`: an in-memory server with ZooKeeper's semantics
  for what the port uses (ephemeral leader node, czxid from a growing zxid, one-shot watches, session
  expiry deleting ephemerals) and one client per replica, with knobs to suspend, expire, fail calls.
* :class:`FakeStorage`: records what was written and when (virtual time), with failure injection.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from app.ports.coordination import (
    ConnectionState,
    CoordinationError,
    LeaderNode,
    Member,
    PermissionDeniedError,
    SwitchoverBusyError,
    SwitchoverRequest,
    TermRecord,
)
from app.ports.storage import FencedError, LeaseExpiredError, Record, StorageError, Written
from app.ports.work import Ended, Outcome, Step

START = 1000.0
WALL_START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: float = START) -> None:
        self._start = start
        self._now = start
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.waits: list[tuple[float, float]] = []  # (when, timeout) of every wait, for assertions

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return WALL_START + timedelta(seconds=self._now - self._start)

    @property
    def elapsed(self) -> float:
        return self._now - self._start

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), callback))

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.call_at(self._now + delay, callback)

    def advance(self, seconds: float) -> None:
        """Move time forward, running the callbacks that fall due on the way."""
        self._run_until(self._now + seconds, None)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.waits.append((self._now, timeout))
        return self._run_until(self._now + timeout, event)

    def _run_until(self, deadline: float, event: threading.Event | None) -> bool:
        while not (event is not None and event.is_set()):
            if not self._timers or self._timers[0][0] > deadline:
                self._now = max(self._now, deadline)
                return event is not None and event.is_set()
            when, _seq, callback = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            callback()
        return True


@dataclass
class _Node:
    owner: int
    epoch: int
    data: dict[str, Any]


@dataclass
class FakeZooKeeper:
    """The shared in-memory server."""

    up: bool = True
    zxid: int = 100
    leader: _Node | None = None
    members: dict[int, dict[str, Any]] = field(default_factory=dict)
    watchers: set[Callable[[bool], None]] = field(default_factory=set)  # called with "deleted"
    sessions: itertools.count = field(default_factory=lambda: itertools.count(0x1000))
    writes: int = 0  # write transactions, failed creates included (ZooKeeper logs those too)
    reads: int = 0
    notifications: int = 0  # watch events delivered
    candidates: dict[int, int] = field(default_factory=dict)  # sequence -> session
    candidate_watchers: dict[int, set[Callable[[], None]]] = field(default_factory=dict)
    candidate_seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    switchover: SwitchoverRequest | None = None
    history: list[TermRecord] = field(default_factory=list)
    clients: list[FakeCoordinator] = field(default_factory=list)  # told of switchover changes

    def set_switchover(self, request: SwitchoverRequest | None) -> None:
        """Write the switchover node (as ``election switchover`` would), telling every client."""
        self.writes += 1
        self.next_zxid()
        self.switchover = request
        for client in list(self.clients):
            client._notify()

    def fire_watches(self, *, deleted: bool) -> None:
        watchers, self.watchers = self.watchers, set()
        self.notifications += len(watchers)
        for watcher in watchers:
            watcher(deleted)

    def remove_candidate(self, sequence: int) -> None:
        if self.candidates.pop(sequence, None) is None:
            return
        watchers = self.candidate_watchers.pop(sequence, set())
        self.notifications += len(watchers)
        for watcher in watchers:
            watcher()

    def next_zxid(self) -> int:
        self.zxid += 1
        return self.zxid

    def delete_leader_by_hand(self) -> None:
        """An operator deleting the node."""
        self.writes += 1
        self.next_zxid()
        self.leader = None
        self.fire_watches(deleted=True)

    def expire(self, session: int) -> None:
        """The server expires ``session``: its ephemeral nodes go, watches fire."""
        self.members.pop(session, None)
        for sequence in [seq for seq, owner in self.candidates.items() if owner == session]:
            self.remove_candidate(sequence)
        if self.leader is not None and self.leader.owner == session:
            self.leader = None
            self.next_zxid()
            self.fire_watches(deleted=True)


class FakeCoordinator:
    """One replica's client of a :class:`FakeZooKeeper`."""

    def __init__(
        self,
        server: FakeZooKeeper | None = None,
        session_timeout: float = 10.0,
        *,
        granted: float | None = None,
    ) -> None:
        self.server = server or FakeZooKeeper()
        self.requested_session_timeout = session_timeout
        # What the server grants on each connection (None: the request as asked). Set
        # ``grant_unknown`` to model a client that could not learn it.
        self.granted = granted
        self.grant_unknown = False
        self.fresh_reads = 0  # leader(fresh=True) calls: the sync + read a leader confirms with
        self.plain_reads = 0
        self._state = ConnectionState.CLOSED
        self._session: int | None = None
        self._subscribers: list[Callable[[], None]] = []
        self.fail_next: list[str] = []  # names of calls that raise CoordinationError once each
        self.calls: list[str] = []
        self.starts = 0
        self.on_call: Callable[[str], None] | None = None  # e.g. advance the clock: a slow server
        self._vacancy = False
        self._moved = False
        self.settled = True  # switchover_settled(): set False to model a re-read in flight
        self.server.clients.append(self)

    # -- port -------------------------------------------------------------------------------
    def start(self) -> None:
        self.starts += 1
        self.calls.append("start")
        self._state = ConnectionState.LOST
        if self.server.up:
            self._connect_new_session()
        self._notify()

    def state(self) -> ConnectionState:
        return self._state

    def granted_session_timeout(self) -> float | None:
        if self._state is not ConnectionState.CONNECTED or self.grant_unknown:
            return None
        return self.requested_session_timeout if self.granted is None else self.granted

    def session_id(self) -> int | None:
        return self._session if self._state is ConnectionState.CONNECTED else None

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def prepare(self, identity: str, info: dict[str, Any]) -> None:
        self._check("prepare")
        assert self._session is not None
        if self._session not in self.server.members:
            self.server.writes += 1
            self.server.members[self._session] = dict(info)

    def leader(self, *, watch: bool, fresh: bool = False) -> LeaderNode | None:
        self._check("leader")
        self.server.reads += 1
        if fresh:
            self.fresh_reads += 1
        else:
            self.plain_reads += 1
        node = self.server.leader
        if watch and node is not None:  # like the adapter: a free node sets no watch
            self.server.watchers.add(self._on_leader_event)
        return None if node is None else _as_leader(node)

    def create_leader(self, data: dict[str, Any]) -> LeaderNode | None:
        self._check("create_leader")
        assert self._session is not None
        self.server.writes += 1
        zxid = self.server.next_zxid()
        if self.server.leader is None:
            self.server.leader = _Node(self._session, zxid, dict(data))
            self.server.fire_watches(deleted=False)
            return _as_leader(self.server.leader)
        return None  # NodeExists, even when it is ours: the caller looks

    def enter_queue(self) -> None:
        self._check("enter_queue")
        assert self._session is not None
        if self._session not in self.server.candidates.values():
            self.server.writes += 1
            self.server.candidates[next(self.server.candidate_seq)] = self._session

    def queue_position(self) -> int:
        self._check("queue_position")
        self.server.reads += 1
        mine = [seq for seq, owner in self.server.candidates.items() if owner == self._session]
        if not mine:
            raise CoordinationError("not in the queue of candidates")
        ahead = [seq for seq in self.server.candidates if seq < mine[0]]
        if ahead:
            self.server.candidate_watchers.setdefault(max(ahead), set()).add(self._on_candidate_gone)
        return len(ahead)

    def take_over_signal(self) -> bool:
        signalled, self._vacancy = self._vacancy, False
        return signalled

    def queue_moved(self) -> bool:
        moved, self._moved = self._moved, False
        return moved

    def leave_queue(self) -> None:
        try:
            self._check("leave_queue")
        except CoordinationError:
            return  # best effort, as the adapter's: the session's end removes the node anyway
        for seq in [seq for seq, owner in self.server.candidates.items() if owner == self._session]:
            self.server.writes += 1
            self.server.remove_candidate(seq)

    def resign(self, node: LeaderNode) -> None:
        self._check("resign")
        leader = self.server.leader
        if leader is not None and leader.owner == self._session and leader.epoch == node.epoch:
            self.server.delete_leader_by_hand()

    def members(self) -> list[Member]:
        self._check("members")
        return [Member(session, data) for session, data in self.server.members.items()]

    def switchover_request(self) -> SwitchoverRequest | None:
        return self.server.switchover

    def switchover_settled(self) -> bool:
        return self.settled

    def request_switchover(self, request: SwitchoverRequest) -> None:
        self._check("request_switchover")
        if self.server.switchover is not None:
            raise SwitchoverBusyError("another switchover is pending")
        self.server.set_switchover(request)

    def clear_switchover(self, request_id: str) -> None:
        self.calls.append("clear_switchover")
        if self.server.switchover is not None and self.server.switchover.id == request_id:
            self.server.set_switchover(None)

    def history(self) -> list[TermRecord]:
        self._check("history")
        return list(self.server.history)

    def begin_term_record(self, record: TermRecord) -> TermRecord | None:
        self._check("begin_term_record")
        terms = self.server.history
        if terms and terms[-1].epoch == record.epoch:
            return None
        previous = terms[-1] if terms else None
        if previous is not None and previous.ended is None:
            previous = replace(previous, ended=record.began, reason="expired")
            terms[-1] = previous
        terms.append(record)
        del terms[:-20]
        return previous

    def end_term_record(self, epoch: int, reason: str, ended: str) -> None:
        self.calls.append("end_term_record")
        terms = self.server.history
        if terms and terms[-1].epoch == epoch and self._state is ConnectionState.CONNECTED:
            terms[-1] = replace(terms[-1], ended=ended, reason=reason)

    def close(self) -> None:
        self.calls.append("close")
        if self._session is not None and self._state is not ConnectionState.CLOSED and self.server.up:
            self.server.expire(self._session)
        self._session = None
        self._state = ConnectionState.CLOSED
        self._notify()

    # -- test controls ----------------------------------------------------------------------
    def suspend(self) -> None:
        """The connection dropped; the session may live on at the server."""
        self._state = ConnectionState.SUSPENDED
        self._notify()

    def reconnect(self) -> None:
        """The connection is back within the session: same session, same nodes."""
        self._state = ConnectionState.CONNECTED
        self._notify()

    def expire_and_reconnect(self) -> None:
        """The server expired our session; the client reconnects with a new one."""
        if self._session is not None:
            self.server.expire(self._session)
        self._state = ConnectionState.LOST
        self._notify()
        self._connect_new_session()
        self._notify()

    def connect_when_up(self) -> None:
        """The server came back: a client that was retrying connects now."""
        if self._state is ConnectionState.LOST and self.server.up:
            self._connect_new_session()
            self._notify()

    # -- internals --------------------------------------------------------------------------
    def _connect_new_session(self) -> None:
        self._session = next(self.server.sessions)
        self._state = ConnectionState.CONNECTED

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.on_call is not None:
            self.on_call(name)
        if name in self.fail_next:
            self.fail_next.remove(name)
            raise CoordinationError(f"injected failure of {name}")
        if self._state is not ConnectionState.CONNECTED:
            raise CoordinationError(f"{name}: connection {self._state.value}")

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            callback()

    def _on_leader_event(self, deleted: bool) -> None:
        self._vacancy = self._vacancy or deleted
        self._notify()

    def _on_candidate_gone(self) -> None:
        self._moved = True
        self._notify()


# -- for `election switchover` (swcli): the command's own session -------------------------------


class SwitchoverToolCoordinator(FakeCoordinator):
    """The session of an ``election switchover`` process: a FakeCoordinator whose writes of the
    request can be refused for want of credentials (``denied``: a protected path, no ``--zk-auth``),
    and that calls ``on_request`` with each request it wrote (a test's leader reacting to it)."""

    def __init__(self, server: FakeZooKeeper) -> None:
        super().__init__(server)
        self.denied = False
        self.on_request: Callable[[SwitchoverRequest], None] | None = None

    def request_switchover(self, request: SwitchoverRequest) -> None:
        if self.denied:
            self.calls.append("request_switchover")
            raise PermissionDeniedError("NoAuthError: not authorized by the node's ACL")
        super().request_switchover(request)
        if self.on_request is not None:
            self.on_request(request)


def _as_leader(node: _Node) -> LeaderNode:
    return LeaderNode(
        node.owner, node.epoch, str(node.data.get("identity", "")), str(node.data.get("acquired_at", ""))
    )


class FakeStorage:
    """In-memory storage that remembers the virtual time of every write.

    Like the real one, it honours ``valid_until`` on the fake clock: a write that ends (after its
    ``write_duration`` of virtual time) at or past it publishes nothing and raises
    LeaseExpiredError; so does a retention that has something to delete.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.files: list[tuple[str, Record]] = []
        self.written: list[tuple[float, Record]] = []
        self.deleted: list[str] = []
        self.prepared = 0
        self.terms = 0
        self.published = 0  # the publish counter: the last file's ``order``
        self.fail_prepare: str | None = None
        self.fail_writes = 0  # the next N writes fail
        self.unsynced_writes = 0  # the next N writes are published but their directory fsync fails
        self.fail_retains = 0  # the next N retentions fail
        self.newer_epoch: int | None = None  # a newer term has written: lower epochs are fenced
        self.write_duration = 0.0  # virtual seconds a write takes
        self.on_write: Callable[[], None] | None = None  # called as each write begins
        self.published_by_others = 0  # files other replicas published (tests bump it)

    def prepare(self) -> int:
        if self.fail_prepare:
            raise StorageError(self.fail_prepare)
        self.prepared += 1
        return 0

    def begin_term(self) -> None:
        self.terms += 1

    def progress(self) -> int | None:
        """The directory's publish counter: our files plus the others'; None before any."""
        return (self.published + self.published_by_others) or None

    def _fence(self, epoch: int) -> None:
        if self.newer_epoch is not None and self.newer_epoch > epoch:
            raise FencedError(epoch, self.newer_epoch)

    def write(self, record: Record, *, valid_until: float) -> Written:
        if self.on_write is not None:
            self.on_write()
        if self.fail_writes:
            self.fail_writes -= 1
            raise StorageError("injected: No space left on device")
        if self.write_duration:
            self.clock.advance(self.write_duration)
        self._fence(record.epoch)
        if self.clock.monotonic() >= valid_until:
            raise LeaseExpiredError("injected: the lease ran out before the file was published")
        name = f"leader-{record.epoch:020d}-{record.sequence:012d}.json"
        self.published += 1
        self.files.append((name, record))
        self.written.append((self.clock.elapsed, record))
        synced = not self.unsynced_writes
        self.unsynced_writes = max(self.unsynced_writes - 1, 0)
        return Written(name, self.published, synced)

    def retain(self, capacity: int, *, epoch: int, valid_until: float) -> list[str]:
        excess = max(len(self.files) - capacity, 0)
        if not excess:
            return []
        self._fence(epoch)
        if self.clock.monotonic() >= valid_until:
            raise LeaseExpiredError("injected: the lease ran out before retention")
        if self.fail_retains:
            self.fail_retains -= 1
            raise StorageError("injected: Permission denied")
        gone = [name for name, _ in self.files[:excess]]
        del self.files[:excess]
        self.deleted.extend(gone)
        return gone


class FakeWork:
    """A command-like work (app.ports.work) on virtual time: records every call as
    ``(what, elapsed, detail)`` in ``events``; ``exit_after`` seconds after each start it ends by
    itself with ``exit_code`` (None: it runs until stopped)."""

    kind = "exec"
    shows_progress = False

    def __init__(self, clock: FakeClock, events: list[tuple[str, float, Any]] | None = None) -> None:
        self._clock = clock
        self.events: list[tuple[str, float, Any]] = [] if events is None else events
        self.exit_after: float | None = None
        self.exit_code = "1"
        self.deadline: float | None = None  # the last valid_until a step gave it
        self._started: float | None = None
        self._ended: Ended | None = None
        self.wake: Callable[[], None] = lambda: None

    def _log(self, what: str, detail: Any = None) -> None:
        self.events.append((what, round(self._clock.elapsed, 6), detail))

    def prepare(self) -> int:
        return 0

    def period(self, lease: float) -> float:
        return lease / 6.0

    def begin(self, epoch: int) -> None:
        self._ended = None
        self._log("begin", epoch)

    def step(self, epoch: int, *, valid_until: float) -> Step:
        self.deadline = valid_until
        if self._started is None:
            self._started = self._clock.monotonic()
            self._log("start", epoch)
            if self.exit_after is not None:
                started = self._started
                self._clock.call_later(self.exit_after, lambda: self._exit(started))
        else:
            self._log("renew", round(valid_until - START, 6))
        return Step(Outcome.DONE)

    def _exit(self, started: float) -> None:
        if self._started != started:
            return  # that child was stopped meanwhile
        self._ended = Ended(self.exit_code, self._clock.monotonic() - started, stopped=False)
        self._started = None
        self._log("exited", self.exit_code)
        self.wake()

    def stop(self, reason: str) -> None:
        if self._started is not None:
            self._log("stop", reason)
        self._started = None

    def kill_now(self) -> None:
        self._log("kill_now")

    def ended(self) -> Ended | None:
        return self._ended

    def running(self) -> bool:
        return self._started is not None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "running": self.running()}
