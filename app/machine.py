"""The state machine: one loop on one thread that runs the current state until it names the next.

Each state is a small object with one job (``app.states``). Its ``run`` returns a
:class:`Transition` that names the next state and says why in a sentence; the machine logs that
sentence as one line (from, to, reason, time spent in the old state), counts it, and runs the next
state. ``Stopping`` is terminal: when it returns, :meth:`StateMachine.run` returns the exit status.

Other threads (kazoo's callbacks, signal handlers, the HTTP server) never call into a state. They
record what happened and set :attr:`Context.wakeup`; a waiting state wakes early and looks again
(Patroni's "a watch only sets an event" rule).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from app.config import Settings
from app.ports.clock import Clock
from app.ports.coordination import Coordinator, LeaderNode
from app.ports.metrics import Metrics
from app.ports.storage import Storage
from app.ports.work import Work

log = logging.getLogger("election.machine")

# The longest a state sleeps without touching the heartbeat; /healthz reads the heartbeat and fails
# after 30 s without one. Each beat wakes an idle replica: 5 s keeps that near nothing.
HEARTBEAT_SECONDS = 5.0


class StateName(enum.StrEnum):
    INIT = "Init"
    ATTEMPTER = "Attempter"
    LEADER = "Leader"
    FAILOVER = "Failover"
    STOPPING = "Stopping"


@dataclass(frozen=True)
class Transition:
    """Where to go next and why; ``reason`` is a sentence for logs and tests."""

    to: StateName
    reason: str


class State(Protocol):
    name: StateName

    def run(self, ctx: Context) -> Transition | None:
        """Do this state's job until it is time to leave; None only from the terminal state."""
        ...


class Context:
    """What the states share: settings, ports, and the few facts that outlive one state.

    Written only by the machine thread, except :meth:`request_stop` and :meth:`wake`, which any
    thread (or a signal handler) may call.
    """

    def __init__(
        self,
        settings: Settings,
        coordinator: Coordinator,
        storage: Storage,
        clock: Clock,
        metrics: Metrics,
        jitter: Callable[[], float],
        work: Work,
    ) -> None:
        self.settings = settings
        self.coordinator = coordinator
        self.storage = storage
        # What the leader does (app.ports.work): files by default, the user's command with --exec.
        self.work: Work = work
        self.clock = clock
        self.metrics = metrics
        self.jitter = jitter
        self.wakeup = threading.Event()
        self.exit_code = 0
        # The term we hold, set by Attempter just before it hands over to Leader.
        self.term: LeaderNode | None = None
        # When (monotonic) the create that made ``term`` was sent: the confirmation Leader's first
        # write relies on. None: Leader confirms with a fresh read before its first write.
        self.term_confirmed_at: float | None = None
        # After the work exited by itself (app.states.leader.work_backoff): how many times in a row,
        # and when (monotonic) this replica may be a candidate again (None: at once).
        self.work_exit_streak = 0
        self.rejoin_at: float | None = None
        # The pending switchover request's id and when (monotonic) this replica first saw it: it
        # binds the replica for its expires_in from then (app.states.switchover).
        self.switchover_seen: tuple[str, float] | None = None
        # The epoch whose term this replica has put into the election's history (app.states.leader).
        self.recorded_epoch: int | None = None
        # The leader as last seen by a look at ZooKeeper (for /status).
        self.observed_leader: LeaderNode | None = None
        # When the current run of failures began, and how many Failover visits it has had. The run
        # ends with useful work: a file written as leader, or, as a standby, the directory's
        # publish counter seen to move (app.states.progress).
        self.failing_since: float | None = None
        self.failover_streak = 0
        # When useful work was last done or seen (process start until then), the publish counter
        # a standby last saw, and why this replica is not healthy now (None: it is), for /readyz.
        self.progress_at = clock.monotonic()
        self.progress_seen: int | None = None
        self.unhealthy: str | None = None
        self.entered_because = ""  # the reason of the last transition (the machine sets it)
        self.heartbeat = clock.monotonic()
        self._stop_reason: str | None = None

    # -- called from any thread -------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask the machine to go to Stopping at its next look; safe from signal handlers."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self.wakeup.set()

    def wake(self) -> None:
        """Something changed: make a waiting state look again."""
        self.wakeup.set()

    # -- called by states -------------------------------------------------------------------
    def work_done(self) -> None:
        """Useful work happened (a file published by us, or seen published by the leader): any
        failure streak is over."""
        self.failing_since = None
        self.failover_streak = 0
        self.progress_at = self.clock.monotonic()
        self.unhealthy = None

    def work_failed(self, why: str) -> None:
        """Leader work was tried and failed (a write refused, fenced, past its lease): unless a
        failure streak is already running, one starts, counted from the last useful work done or
        seen, so that a cluster that cannot work gives up within failover-timeout of its last
        file however long each failing term lasts; /readyz says why until work is done again."""
        if self.failing_since is None:
            self.failing_since = self.progress_at
        self.unhealthy = why

    def clear_wakeup(self) -> None:
        """Forget pending wake-ups: call right before looking at the world, since that look sees
        everything they announced (clearing after the look could lose a change made during it)."""
        self.wakeup.clear()

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def now(self) -> float:
        return self.clock.monotonic()

    def wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic) or until woken; return True when woken.

        Guarantees: returns at once if a wake-up is pending; consumes the wake-up it returns on, so
        the caller must look at the world again; keeps the heartbeat fresh while it sleeps.
        """
        while True:
            now = self.clock.monotonic()
            self.heartbeat = now
            if self.wakeup.is_set():
                self.wakeup.clear()
                return True
            remaining = deadline - now
            if remaining <= 0:
                return False
            self.clock.wait(self.wakeup, min(remaining, HEARTBEAT_SECONDS))


@dataclass(frozen=True)
class Snapshot:
    """What /status and /healthz read; assembled from attributes the machine thread writes."""

    state: StateName
    state_since: float
    heartbeat: float


class StateMachine:
    """Runs states from Init until Stopping returns; logs and counts every transition."""

    def __init__(self, ctx: Context, states: Mapping[StateName, State]) -> None:
        missing = set(StateName) - set(states)
        if missing:
            raise ValueError(f"no implementation for states {sorted(missing)}")
        self.ctx = ctx
        self._states = states
        self.state = StateName.INIT
        self.state_since = ctx.now()
        # Set when run() returns, however it returns (the shutdown watchdog waits on it).
        self.done = threading.Event()

    def snapshot(self) -> Snapshot:
        return Snapshot(self.state, self.state_since, self.ctx.heartbeat)

    def run(self) -> int:
        """Run to completion; return the process exit status (0 unless Failover gave up)."""
        try:
            return self._loop()
        finally:
            self.done.set()

    def _loop(self) -> int:
        self._enter(StateName.INIT, None, "process started")
        while True:
            transition = self._states[self.state].run(self.ctx)
            if transition is None:
                if self.state is not StateName.STOPPING:
                    raise RuntimeError(f"state {self.state} ended without naming the next state")
                return self.ctx.exit_code
            if self.state is StateName.STOPPING:
                raise RuntimeError("Stopping is terminal")
            self._enter(transition.to, self.state, transition.reason)

    def _enter(self, to: StateName, previous: StateName | None, reason: str) -> None:
        now = self.ctx.now()
        spent = now - self.state_since
        if previous is not None:
            log.info(
                "%s -> %s: %s",
                previous,
                to,
                reason,
                extra={
                    "event": "transition",
                    "from": str(previous),
                    "to": str(to),
                    "reason": reason,
                    "duration_seconds": round(spent, 6),
                },
            )
        else:
            log.info("entering %s: %s", to, reason, extra={"event": "start", "to": str(to), "reason": reason})
        self.state = to
        self.state_since = now
        self.ctx.entered_because = reason
        self.ctx.heartbeat = now
        self.ctx.metrics.state_entered(str(to), str(previous) if previous is not None else None, now)
