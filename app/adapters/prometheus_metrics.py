"""Metrics on a prometheus-client registry that the caller injects (no global registry).

Exposed (all prefixed ``election_``, base units, ``_total`` on counters):

=============================================  =======  ============================================
name                                           type     meaning
=============================================  =======  ============================================
``election_state{state}``                      gauge    1 for the current state, 0 for the others
``election_state_duration_seconds``            gauge    time spent in the current state
``election_state_transitions_total{from,to}``  counter  state changes
``election_is_leader``                         gauge    1 while this replica leads
``election_leader_epoch``                      gauge    epoch of the current term (0 if not leading)
``election_leadership_acquired_total``         counter  terms begun
``election_leadership_lost_total``             counter  terms ended (any reason)
``election_files_written_total``               counter  leader files written
``election_files_deleted_total``               counter  leader files deleted by retention
``election_write_errors_total{reason}``        counter  failed writes or deletions, by reason
``election_fenced_writes_total``               counter  writes refused: a newer term had written
``election_zk_connection_state{state}``        gauge    1 for the current ZooKeeper connection state
``election_zk_session_timeout_seconds``        gauge    session timeout the server granted (0 before)
``election_build_info{version,python}``        gauge    always 1
=============================================  =======  ============================================
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from app import __version__
from app.ports.coordination import ConnectionState
from app.ports.metrics import CHANGE_REASONS, WRITE_ERROR_REASONS


def _counter_by(
    name: str, documentation: str, label: str, known: Iterable[str], registry: CollectorRegistry
) -> Counter:
    """A counter with one label, each ``known`` value exported at 0 from the start (so that an
    alert's ``increase()`` over it is defined before the first event, not absent)."""
    counter = Counter(name, documentation, [label], registry=registry)
    for value in known:
        counter.labels(value)
    return counter


class PrometheusMetrics:
    """Implements :class:`app.ports.metrics.Metrics`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        monotonic: Callable[[], float],
        state_names: Iterable[str],
    ) -> None:
        self._monotonic = monotonic
        self._since: float | None = None
        self.state = Gauge(
            "election_state",
            "1 for the current state of this replica, 0 otherwise",
            ["state"],
            registry=registry,
        )
        for name in state_names:
            self.state.labels(name).set(0)
        self.duration = Gauge(
            "election_state_duration_seconds", "Seconds spent in the current state", registry=registry
        )
        self.duration.set_function(self._duration)
        self.transitions = Counter(
            "election_state_transitions", "State changes", ["from", "to"], registry=registry
        )
        self.is_leader = Gauge("election_is_leader", "1 while this replica leads", registry=registry)
        self.epoch = Gauge(
            "election_leader_epoch", "Epoch (fencing token) of the term this replica leads", registry=registry
        )
        self.acquired = Counter("election_leadership_acquired", "Leadership terms begun", registry=registry)
        self.lost = Counter("election_leadership_lost", "Leadership terms ended", registry=registry)
        self.written = Counter("election_files_written", "Leader files written", registry=registry)
        self.deleted = Counter(
            "election_files_deleted", "Leader files deleted by retention", registry=registry
        )
        self.write_errors = _counter_by(
            "election_write_errors", "Failed leader file writes or deletions, by reason", "reason",
            WRITE_ERROR_REASONS, registry,
        )  # fmt: skip
        self.fenced = Counter(
            "election_fenced_writes", "Writes refused because a newer term had written", registry=registry
        )
        self.connection = Gauge(
            "election_zk_connection_state",
            "1 for the current ZooKeeper connection state, 0 otherwise",
            ["state"],
            registry=registry,
        )
        for conn in ConnectionState:
            self.connection.labels(conn.value).set(1 if conn is ConnectionState.CLOSED else 0)
        self.session_timeout = Gauge(
            "election_zk_session_timeout_seconds",
            "Session timeout the ZooKeeper server granted on the last connection (leases count it)",
            registry=registry,
        )
        self._term_began: float | None = None
        self.tenure = Gauge(
            "election_leader_tenure_seconds",
            "Time in the current leadership term, on the leader (0 elsewhere)",
            registry=registry,
        )
        self.tenure.set_function(self._tenure)
        self.changes = _counter_by(
            "election_leadership_changes",
            "Leadership changes seen by the new leader, by why the previous term ended", "reason",
            CHANGE_REASONS, registry,
        )  # fmt: skip
        self.work_is_running = Gauge(
            "election_work_running",
            "1 while this replica's leader work runs (its command with --exec, its files otherwise)",
            registry=registry,
        )
        self.work_exits = _counter_by(
            "election_work_exits",
            "Times the leader's command exited by itself, by exit status (or signal name)", "code",
            (), registry,
        )  # fmt: skip
        self.work_stops = _counter_by(
            "election_work_stops",
            "Times the leader's command was stopped by us, by the last signal it needed", "signal",
            ("SIGTERM", "SIGKILL"), registry,
        )  # fmt: skip
        build = Gauge(
            "election_build_info", "Build information; always 1", ["version", "python"], registry=registry
        )
        build.labels(__version__, platform.python_version()).set(1)

    def _duration(self) -> float:
        return 0.0 if self._since is None else max(self._monotonic() - self._since, 0.0)

    def state_entered(self, state: str, previous: str | None, since: float) -> None:
        if previous is not None:
            self.state.labels(previous).set(0)
            self.transitions.labels(previous, state).inc()
        self.state.labels(state).set(1)
        self._since = since

    def connection_state(self, state: str) -> None:
        for conn in ConnectionState:
            self.connection.labels(conn.value).set(1 if conn.value == state else 0)

    def _tenure(self) -> float:
        began = self._term_began
        return 0.0 if began is None else max(0.0, self._monotonic() - began)

    def leadership_changed(self, reason: str) -> None:
        self.changes.labels(reason).inc()

    def leadership_acquired(self, epoch: int) -> None:
        self._term_began = self._monotonic()
        self.acquired.inc()
        self.is_leader.set(1)
        self.epoch.set(epoch)

    def leadership_lost(self) -> None:
        self._term_began = None
        self.lost.inc()
        self.is_leader.set(0)
        self.epoch.set(0)

    def file_written(self) -> None:
        self.written.inc()

    def files_deleted(self, count: int) -> None:
        self.deleted.inc(count)

    def write_failed(self, reason: str) -> None:
        if reason not in WRITE_ERROR_REASONS:
            raise ValueError(f"unknown write error reason {reason!r}")
        self.write_errors.labels(reason).inc()

    def write_fenced(self) -> None:
        self.fenced.inc()

    def zk_session_timeout(self, seconds: float | None) -> None:
        if seconds is not None:
            self.session_timeout.set(seconds)

    def work_running(self, running: bool) -> None:
        self.work_is_running.set(1 if running else 0)

    def work_exited(self, code: str) -> None:
        self.work_exits.labels(code).inc()

    def work_stopped(self, signal: str) -> None:
        self.work_stops.labels(signal).inc()
