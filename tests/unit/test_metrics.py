"""PrometheusMetrics on a fresh registry: values of every metric, and an exposition promtool accepts."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app import __version__
from app.adapters.prometheus_metrics import PrometheusMetrics
from app.machine import StateName
from app.ports.coordination import ConnectionState

STATES = [str(s) for s in StateName]


class Monotonic:
    """An injected monotonic clock the test moves by hand."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> Monotonic:
    return Monotonic()


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: Monotonic) -> PrometheusMetrics:
    return PrometheusMetrics(registry, clock, STATES)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def state_values(registry: CollectorRegistry) -> dict[str, float | None]:
    return {s: value(registry, "election_state", state=s) for s in STATES}


def walk(metrics: PrometheusMetrics, *states: str, start: float = 0.0) -> None:
    """Enter ``states`` in turn, one a second from ``start``, each from the one before it (the first
    from none)."""
    for i, state in enumerate(states):
        metrics.state_entered(state, states[i - 1] if i else None, start + i)


# -- election_state --------------------------------------------------------------------------


@pytest.mark.usefixtures("metrics")
def test_every_state_starts_at_zero(registry: CollectorRegistry) -> None:
    assert state_values(registry) == dict.fromkeys(STATES, 0.0)


def test_entering_a_state_sets_it_to_one(metrics: PrometheusMetrics, registry: CollectorRegistry) -> None:
    metrics.state_entered("Init", None, 500.0)
    assert state_values(registry) == {**dict.fromkeys(STATES, 0.0), "Init": 1.0}


def test_a_transition_moves_the_one_to_the_new_state(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    walk(metrics, "Init", "Attempter", "Leader", start=500.0)
    assert state_values(registry) == {**dict.fromkeys(STATES, 0.0), "Leader": 1.0}


# -- transitions -----------------------------------------------------------------------------


def test_transitions_are_counted_by_from_and_to(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    walk(metrics, "Init", "Attempter", "Failover", "Init", "Attempter")
    total = "election_state_transitions_total"
    assert value(registry, total, **{"from": "Init", "to": "Attempter"}) == 2.0
    assert value(registry, total, **{"from": "Attempter", "to": "Failover"}) == 1.0
    assert value(registry, total, **{"from": "Failover", "to": "Init"}) == 1.0


def test_the_first_state_is_not_counted_as_a_transition(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    metrics.state_entered("Init", None, 0.0)
    samples = [
        s for f in registry.collect() for s in f.samples if s.name == "election_state_transitions_total"
    ]
    assert samples == []


# -- time in state ---------------------------------------------------------------------------


@pytest.fixture
def duration_after(registry: CollectorRegistry, clock: Monotonic) -> Callable[[float], float | None]:
    """Moves the clock on by so many seconds, then reads ``election_state_duration_seconds``."""

    def later(seconds: float) -> float | None:
        clock.now += seconds
        return value(registry, "election_state_duration_seconds")

    return later


@pytest.mark.usefixtures("metrics")
def test_duration_is_zero_before_any_state(duration_after: Callable[[float], float | None]) -> None:
    assert duration_after(100.0) == 0.0


def test_duration_follows_the_injected_clock(
    metrics: PrometheusMetrics, clock: Monotonic, duration_after: Callable[[float], float | None]
) -> None:
    metrics.state_entered("Attempter", "Init", clock.now)
    assert duration_after(12.5) == 12.5
    assert duration_after(7.5) == 20.0


def test_duration_restarts_on_a_transition(
    metrics: PrometheusMetrics, clock: Monotonic, duration_after: Callable[[float], float | None]
) -> None:
    metrics.state_entered("Attempter", "Init", clock.now)
    clock.now += 30.0
    metrics.state_entered("Leader", "Attempter", clock.now)
    assert duration_after(2.0) == 2.0


# -- leadership ------------------------------------------------------------------------------


@pytest.mark.usefixtures("metrics")
def test_not_leader_at_start(registry: CollectorRegistry) -> None:
    assert value(registry, "election_is_leader") == 0.0
    assert value(registry, "election_leader_epoch") == 0.0


def test_acquiring_leadership_sets_is_leader_and_epoch(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    metrics.leadership_acquired(4294967311)
    assert value(registry, "election_is_leader") == 1.0
    assert value(registry, "election_leader_epoch") == 4294967311.0
    assert value(registry, "election_leadership_acquired_total") == 1.0


def test_losing_leadership_clears_is_leader_and_epoch(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    metrics.leadership_acquired(9)
    metrics.leadership_lost()
    assert value(registry, "election_is_leader") == 0.0
    assert value(registry, "election_leader_epoch") == 0.0
    assert value(registry, "election_leadership_lost_total") == 1.0


def test_terms_are_counted(metrics: PrometheusMetrics, registry: CollectorRegistry) -> None:
    for epoch in (5, 9, 12):
        metrics.leadership_acquired(epoch)
        metrics.leadership_lost()
    assert value(registry, "election_leadership_acquired_total") == 3.0
    assert value(registry, "election_leadership_lost_total") == 3.0


# -- files -----------------------------------------------------------------------------------


def test_files_written_are_counted(metrics: PrometheusMetrics, registry: CollectorRegistry) -> None:
    for _ in range(4):
        metrics.file_written()
    assert value(registry, "election_files_written_total") == 4.0


def test_files_deleted_add_up_the_counts(metrics: PrometheusMetrics, registry: CollectorRegistry) -> None:
    metrics.files_deleted(2)
    metrics.files_deleted(0)
    metrics.files_deleted(3)
    assert value(registry, "election_files_deleted_total") == 5.0


def test_write_errors_are_counted_by_reason(metrics: PrometheusMetrics, registry: CollectorRegistry) -> None:
    metrics.write_failed("storage")
    metrics.write_failed("storage")
    metrics.write_failed("lease_expired")
    assert value(registry, "election_write_errors_total", reason="storage") == 2.0
    assert value(registry, "election_write_errors_total", reason="lease_expired") == 1.0


def test_every_write_error_reason_is_exposed_at_zero_from_the_start(registry: CollectorRegistry) -> None:
    PrometheusMetrics(registry, lambda: 0.0, ["Init"])
    reasons = ("storage", "lease_expired", "directory_fsync", "retention")
    assert {r: value(registry, "election_write_errors_total", reason=r) for r in reasons} == dict.fromkeys(
        reasons, 0.0
    )


def test_an_unknown_write_error_reason_is_a_bug_not_a_new_series(metrics: PrometheusMetrics) -> None:
    with pytest.raises(ValueError, match="unknown write error reason"):
        metrics.write_failed("disk")


# -- ZooKeeper connection, build info --------------------------------------------------------


def connection_values(registry: CollectorRegistry) -> dict[str, float | None]:
    return {c.value: value(registry, "election_zk_connection_state", state=c.value) for c in ConnectionState}


@pytest.mark.usefixtures("metrics")
def test_connection_starts_closed(registry: CollectorRegistry) -> None:
    assert connection_values(registry) == {"connected": 0.0, "suspended": 0.0, "lost": 0.0, "closed": 1.0}


def test_connection_state_sets_one_for_the_current_state(
    metrics: PrometheusMetrics, registry: CollectorRegistry
) -> None:
    metrics.connection_state("connected")
    metrics.connection_state("suspended")
    assert connection_values(registry) == {"connected": 0.0, "suspended": 1.0, "lost": 0.0, "closed": 0.0}


@pytest.mark.usefixtures("metrics")
def test_build_info_carries_version_and_python(registry: CollectorRegistry) -> None:
    labels = {"version": __version__, "python": platform.python_version()}
    assert value(registry, "election_build_info", **labels) == 1.0


def test_two_instances_on_separate_registries_do_not_clash(clock: Monotonic) -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    PrometheusMetrics(first, clock, STATES).file_written()
    PrometheusMetrics(second, clock, STATES)
    assert value(first, "election_files_written_total") == 1.0
    assert value(second, "election_files_written_total") == 0.0


# -- promtool --------------------------------------------------------------------------------


def test_exposition_passes_promtool_check_metrics(
    metrics: PrometheusMetrics, registry: CollectorRegistry, clock: Monotonic
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: install it with `apt-get install -y --no-install-recommends prometheus` "
            "(Debian/Ubuntu) or put the promtool binary from a Prometheus release on PATH"
        )
    metrics.connection_state("connected")
    walk(metrics, "Init", "Attempter", "Leader", start=clock.now)
    metrics.leadership_acquired(42)
    metrics.file_written()
    metrics.files_deleted(1)
    metrics.write_failed("storage")
    metrics.leadership_lost()
    metrics.state_entered("Failover", "Leader", clock.now + 3)
    exposition = generate_latest(registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout + result.stderr == b"", (result.stdout + result.stderr).decode()  # no lint warnings
