"""Wiring: build one replica (adapters, state machine, HTTP server, signals) from its settings.

This is the only place that knows which adapter implements which port. Tests build a
:class:`Replica` with fakes for some ports; ``election run`` builds it with the real ones.

Threads of a running replica: the main thread runs the state machine (and receives signals); kazoo
runs its connection thread (callbacks only record and wake); the HTTP server waits on all its
connections on one daemon thread and answers on up to four (app.http); a signal thread turns
SIGTERM/SIGINT into a stop request, and a shutdown watchdog thread starts with the first of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import resource
import signal
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from app import __version__
from app.adapters.command_work import CommandWork
from app.adapters.file_work import FileWork
from app.adapters.fs_storage import DirectoryStorage
from app.adapters.kazoo_coordinator import KazooCoordinator
from app.adapters.prometheus_metrics import PrometheusMetrics
from app.adapters.system_clock import SystemClock
from app.config import Settings
from app.http import Endpoints, HttpServer
from app.machine import Context, StateMachine, StateName
from app.ports.clock import Clock
from app.ports.coordination import ConnectionState, CoordinationError, Coordinator, LeaderNode
from app.ports.storage import Storage
from app.ports.work import Work
from app.states import all_states

log = logging.getLogger("election.wiring")

# /healthz fails when the machine has not looked at the world for this long (it does every 5 s
# at least: HEARTBEAT_SECONDS).
LIVENESS_STALL_SECONDS = 30.0
EXIT_SHUTDOWN_TIMEOUT = 1
# /status reads the leader node from ZooKeeper at most this often.
STATUS_CACHE_SECONDS = 0.25
# ... and the history (it changes once per term) at most this often.
HISTORY_CACHE_SECONDS = 2.0
# How long the shutdown watchdog lets its last line take before it exits anyway (stderr may be full).
WATCHDOG_LAST_LINE_SECONDS = 0.2


def _ignore_in_handler(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler of SIGTERM/SIGINT: nothing (the signal thread does the work)."""


def _write_stderr(data: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(2, data)


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit now.

    The HTTP port is a load balancer's target: it must hold 1,000 and more connections at once, and
    the usual soft limit (1,024) would run out first (app.http sizes its connection budget from
    this limit). The hard limit is the operator's bound; we only stop short of it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:  # e.g. an infinite hard limit some kernels refuse
            log.warning("could not raise the open files limit from %d: %s", soft, exc)
            return soft
    return hard


def make_coordinator(settings: Settings) -> KazooCoordinator:
    return KazooCoordinator(
        settings.zk_connect_string,
        settings.election_path,
        session_timeout=settings.zk_session_timeout,
        reconnect_backoff_max=settings.failover_backoff_max,
        auth=settings.zk_auth,
        tls=settings.zk_tls,
    )


class Replica:
    """One ``election run`` process: the machine plus everything around it."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        coordinator: Coordinator | None = None,
        storage: Storage | None = None,
        registry: CollectorRegistry | None = None,
        jitter: Callable[[], float] | None = None,
        work: Work | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        self.coordinator = coordinator or make_coordinator(settings)
        self.metrics = PrometheusMetrics(self.registry, self.clock.monotonic, [str(s) for s in StateName])
        # The same clock as the leases: valid_until is a time on it.
        storage = storage or DirectoryStorage(settings.file_dir, monotonic=self.clock.monotonic)
        self.ctx = Context(
            settings,
            self.coordinator,
            storage,
            self.clock,
            self.metrics,
            jitter or random.random,
            work or self._make_work(settings, storage),
        )
        self.machine = StateMachine(self.ctx, all_states())
        self.coordinator.subscribe(self._on_coordination_change)
        self._http: HttpServer | None = None
        self._leader_cache: tuple[float, LeaderNode | None] | None = None
        self._history_cache: tuple[float, list[dict[str, Any]]] | None = None
        self._granted_session_timeout: float | None = None  # the last one the server granted
        self._signals = 0
        self._stop_signalled = threading.Event()  # arms the shutdown watchdog (install_signal_handlers)
        self._wakeup_sockets: tuple[socket.socket, socket.socket] | None = None

    def _make_work(self, settings: Settings, storage: Storage) -> Work:
        """The leader's work: the user's command with --exec, files otherwise."""
        if settings.exec_command is None:
            return FileWork(storage, self.metrics, self.clock, settings)
        return CommandWork(
            settings.exec_command,
            stop_timeout=settings.exec_stop_timeout,
            identity=settings.identity,
            election_path=settings.election_path,
            metrics=self.metrics,
            monotonic=self.clock.monotonic,
            wall=self.clock.wall,
            wake=lambda: self.ctx.wake(),  # noqa: PLW0108 - self.ctx is not built yet
        )

    # -- what the endpoints show ------------------------------------------------------------
    def _on_coordination_change(self) -> None:
        self.metrics.connection_state(self.coordinator.state().value)
        granted = self.coordinator.granted_session_timeout()
        if granted is not None:
            self._granted_session_timeout = granted
        self.metrics.zk_session_timeout(granted)
        self.ctx.wake()

    def status(self) -> dict[str, Any]:
        snap = self.machine.snapshot()
        now = self.clock.monotonic()
        since_wall = self.clock.wall() - timedelta(seconds=now - snap.state_since)
        zk_state = self.coordinator.state()
        leader = self._leader_now() if zk_state is ConnectionState.CONNECTED else None
        session = self.coordinator.session_id()
        return {
            "identity": self.settings.identity,
            "state": str(snap.state),
            "state_since": since_wall.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "state_duration_seconds": round(now - snap.state_since, 6),
            "leader": None
            if leader is None
            else {
                "identity": leader.identity,
                "epoch": leader.epoch,
                "since": leader.acquired_at,
                "self": session is not None and leader.owner == session,
            },
            "zookeeper": {
                "state": zk_state.value,
                "session_id": None if session is None else f"0x{session:x}",
                "servers": self.settings.zk_connect_string,
                "chroot": self.settings.chroot,
                # What the server granted on the last connection (leases count it), not what we
                # asked for; null before the first connection.
                "session_timeout_seconds": self._granted_session_timeout,
                "requested_session_timeout_seconds": self.settings.zk_session_timeout,
            },
            "election_path": self.settings.election_path,
            "work": self.ctx.work.describe(),
            "no_lead": self.settings.no_lead,
            "history": self._history_now()
            if zk_state is ConnectionState.CONNECTED
            else self._history_cached(),
            "version": __version__,
        }

    def _history_cached(self) -> list[dict[str, Any]]:
        return [] if self._history_cache is None else self._history_cache[1]

    def _history_now(self) -> list[dict[str, Any]]:
        """The election's last terms, newest last: a read at most every HISTORY_CACHE_SECONDS."""
        now = self.clock.monotonic()
        cached = self._history_cache
        if cached is not None and now - cached[0] < HISTORY_CACHE_SECONDS:
            return cached[1]
        try:
            terms = [dataclasses.asdict(term) for term in self.coordinator.history()]
        except CoordinationError:
            return self._history_cached()
        self._history_cache = (now, terms)
        return terms

    def _leader_now(self) -> LeaderNode | None:
        """The leader as ZooKeeper says now: a read (no watch), at most one per STATUS_CACHE_SECONDS.

        A standby learns of a new leader only from this read or its periodic look, because only the
        head of the queue of candidates watches the leader node (that keeps hand-overs herd-free).
        """
        now = self.clock.monotonic()
        cached = self._leader_cache
        if cached is not None and now - cached[0] < STATUS_CACHE_SECONDS:
            return cached[1]
        try:
            leader = self.coordinator.leader(watch=False)
        except CoordinationError:
            leader = self.ctx.observed_leader
        self._leader_cache = (now, leader)
        return leader

    def live(self) -> tuple[bool, str]:
        age = self.clock.monotonic() - self.ctx.heartbeat
        if age > LIVENESS_STALL_SECONDS:
            return False, f"state machine stalled for {age:.1f}s in {self.machine.state}"
        return True, f"state machine alive in {self.machine.state}"

    def ready(self) -> tuple[bool, str]:
        if self.ctx.stop_reason is not None:
            return False, "stopping"
        zk_state = self.coordinator.state()
        if zk_state is not ConnectionState.CONNECTED:
            return False, f"ZooKeeper connection {zk_state.value}"
        unhealthy = self.ctx.unhealthy
        if unhealthy is not None:
            # Failing since the last useful work (Failover, or a leader that publishes nothing):
            # the replica will exit 1 at failover-timeout unless it heals first.
            return False, unhealthy
        return True, "connected to ZooKeeper"

    def leading(self) -> tuple[bool, str]:
        """For /leader: True only while the machine is in Leader with a term and the term's work
        runs (its first file written); a stopping replica is not leading."""
        state = self.machine.state
        if state is not StateName.LEADER:
            return False, f"not leading: {state}"
        term = self.ctx.term
        if term is None:
            return False, "not leading: no term held"
        if self.ctx.stop_reason is not None:
            return False, "stopping"
        if not self.ctx.work.running():
            return False, f"leading epoch {term.epoch}, its work not running yet"
        return True, f"leading epoch {term.epoch}"

    # -- running ----------------------------------------------------------------------------
    def bind_http(self) -> int:
        """Open the HTTP port (raises OSError if it cannot); return the bound port. Raises the
        open files limit first: the server's connection budget is sized from it."""
        raise_open_files_limit()
        address = self.settings.http_address
        app = Endpoints(self.registry, self.status, self.live, self.ready, self.leading)
        self._http = HttpServer(address.host, address.port, app)
        return self._http.port

    def install_signal_handlers(self) -> None:
        """Route SIGTERM and SIGINT to :meth:`_on_signal` on a thread of its own; main thread only.

        Python runs a signal handler on the main thread between two bytecodes, possibly while that
        thread holds a lock (inside ``Event.wait``, or a logging handler's lock while stderr is full),
        so the handler must take none: it does nothing at all. The C-level handler writes the signal's
        number to a wakeup socket (``signal.set_wakeup_fd``), and a daemon thread reading it does the
        work, as Python's documentation recommends.
        """
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # set_wakeup_fd requires it: the C handler must never block
        self._wakeup_sockets = (reader, writer)
        threading.Thread(target=self._relay_signals, args=(reader,), name="signals", daemon=True).start()
        # Started now and armed by the first signal: starting a thread on the signal's path cost
        # the leader's way out a few hundred microseconds (docs/BENCHMARKS.md, issue 13).
        threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _ignore_in_handler)

    def _relay_signals(self, reader: socket.socket) -> None:
        """The signal thread: one :meth:`_on_signal` per signal number read from the wakeup socket."""
        while True:
            try:
                received = reader.recv(64)
            except OSError:
                return
            if not received:
                return
            for signum in received:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        """A stop signal (on the signal thread): arm the watchdog first, then ask the machine to stop;
        a second signal exits at once with 128+signum."""
        self._signals += 1
        if self._signals > 1:
            # A second signal: the operator insists. Leave now; files stay consistent (atomic writes),
            # and the command's group dies with us (not only its direct child).
            self.ctx.work.kill_now()
            os._exit(128 + signum)
        # First, so that nothing below (a lock, a log line to a full pipe) can outlast the timeout.
        self._stop_signalled.set()
        self.ctx.request_stop(f"received {signal.Signals(signum).name}")

    def _watchdog(self) -> None:
        """Once armed by the first stop signal: exit with status 1 if the machine has not finished
        within ``--shutdown-timeout``.

        It takes no logging lock (the thread that holds one may be what is stuck, writing to a full
        pipe): its last line goes to fd 2 from a helper thread that it waits for only briefly.
        """
        self._stop_signalled.wait()
        if self.machine.done.wait(self.settings.shutdown_timeout):
            return
        message = f"shutdown took longer than {self.settings.shutdown_timeout:.3g}s; exiting"
        line = (
            f"ERROR [{self.settings.identity}] {message}"
            if self.settings.log_format == "text"
            else json.dumps(
                {
                    "level": "ERROR",
                    "logger": log.name,
                    "message": message,
                    "event": "shutdown_timeout",
                    "identity": self.settings.identity,
                    "election_path": self.settings.election_path,
                }
            )
        )
        writer = threading.Thread(
            target=_write_stderr, args=((line + "\n").encode(),), name="last-words", daemon=True
        )
        writer.start()
        writer.join(WATCHDOG_LAST_LINE_SECONDS)
        self.ctx.work.kill_now()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    def run(self) -> int:
        """Run until stopped; return the exit status. Call :meth:`bind_http` first to serve HTTP."""
        if self._http is not None:
            self._http.start()
        try:
            return self.machine.run()
        finally:
            if self._http is not None:
                self._http.stop()
            self.coordinator.close()
            for handler in logging.getLogger().handlers:
                handler.flush()
