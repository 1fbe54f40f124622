"""Wiring: build one replica (adapters, state machine, HTTP server, signals) from its settings.

This is the only place that knows which adapter implements which port. Tests build a
:class:`Replica` with fakes for some ports; ``election run`` builds it with the real ones.

Threads of a running replica: the main thread runs the state machine (and receives signals); kazoo
runs its connection thread (callbacks only record and wake); the HTTP server answers on a daemon
thread; a shutdown watchdog thread starts with the first stop signal.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from app import __version__
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
from app.states import all_states

log = logging.getLogger("election.wiring")

# /healthz fails when the machine has not looked at the world for this long (it does every 5 s
# at least: HEARTBEAT_SECONDS).
LIVENESS_STALL_SECONDS = 30.0
EXIT_SHUTDOWN_TIMEOUT = 1
# /status reads the leader node from ZooKeeper at most this often.
STATUS_CACHE_SECONDS = 0.25


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
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        self.coordinator = coordinator or make_coordinator(settings)
        self.metrics = PrometheusMetrics(self.registry, self.clock.monotonic, [str(s) for s in StateName])
        self.ctx = Context(
            settings,
            self.coordinator,
            # The same clock as the leases: valid_until is a time on it.
            storage or DirectoryStorage(settings.file_dir, monotonic=self.clock.monotonic),
            self.clock,
            self.metrics,
            jitter or random.random,
        )
        self.machine = StateMachine(self.ctx, all_states())
        self.coordinator.subscribe(self._on_coordination_change)
        self._http: HttpServer | None = None
        self._leader_cache: tuple[float, LeaderNode | None] | None = None
        self._granted_session_timeout: float | None = None  # the last one the server granted
        self._signals = 0

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
                # What the server granted on the last connection (leases count it), not what we
                # asked for; null before the first connection.
                "session_timeout_seconds": self._granted_session_timeout,
                "requested_session_timeout_seconds": self.settings.zk_session_timeout,
            },
            "election_path": self.settings.election_path,
            "version": __version__,
        }

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

    # -- running ----------------------------------------------------------------------------
    def bind_http(self) -> int:
        """Open the HTTP port (raises OSError if it cannot); return the bound port."""
        address = self.settings.http_address
        app = Endpoints(self.registry, self.status, self.live, self.ready)
        self._http = HttpServer(address.host, address.port, app)
        return self._http.port

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            # A second signal: the operator insists. Leave now; files stay consistent (atomic writes).
            os._exit(128 + signum)
        self.ctx.request_stop(f"received {name}")
        watchdog = threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True)
        watchdog.start()

    def _watchdog(self) -> None:
        if self.machine.done.wait(self.settings.shutdown_timeout):
            return
        log.error(
            "shutdown took longer than %.3gs; exiting",
            self.settings.shutdown_timeout,
            extra={"event": "shutdown_timeout"},
        )
        logging.shutdown()
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
