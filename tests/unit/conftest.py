"""A replica wired with fakes: virtual time, in-memory ZooKeeper and storage, real metrics."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry

from app.config import Settings
from app.wiring import Replica
from tests.fakes import START, FakeClock, FakeCoordinator, FakeStorage, FakeWork, FakeZooKeeper

T = TypeVar("T")

BASE = Settings(
    leader_timeout=10.0,
    attempter_timeout=10.0,
    file_dir=Path("/nonexistent/unit"),
    storage_capacity=3,
    zk_session_timeout=9.0,
    zk_connect_timeout=5.0,
    identity="me",
    failover_timeout=60.0,
    failover_backoff_max=4.0,
)


@dataclass
class Harness:
    clock: FakeClock
    server: FakeZooKeeper
    coordinator: FakeCoordinator
    storage: FakeStorage
    registry: CollectorRegistry
    replica: Replica
    work: FakeWork | None = None  # set with make_harness(command=True): a command-like work

    def stop_at(self, elapsed: float, reason: str = "test stop") -> None:
        self.clock.call_at(START + elapsed, lambda: self.replica.ctx.request_stop(reason))

    def at(self, elapsed: float, action: Callable[[], Any]) -> None:
        self.clock.call_at(START + elapsed, action)

    def run(self, until: float | None = None) -> int:
        """Run the replica's state machine to its end (asked to stop at elapsed ``until`` if given):
        its exit status."""
        if until is not None:
            self.stop_at(until)
        return self.replica.machine.run()

    def seen_at(self, look: Callable[[], T], *elapsed: float) -> list[T]:
        """What ``look`` returns at each of these instants of the run, in their order: the list fills
        as the run passes them (a look at the same instant as another action comes first if it was
        asked for first)."""
        seen: list[T] = []
        for when in elapsed:
            self.at(when, lambda: seen.append(look()))
        return seen

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    @property
    def write_times(self) -> list[float]:
        return [when for when, _record in self.storage.written]


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    def make(
        *,
        server: FakeZooKeeper | None = None,
        jitter: Callable[[], float] = lambda: 0.0,
        command: bool = False,
        **overrides: Any,
    ) -> Harness:
        clock = FakeClock()
        zk = server or FakeZooKeeper()
        settings = replace(BASE, **overrides)
        coordinator = FakeCoordinator(zk, session_timeout=settings.zk_session_timeout)
        storage = FakeStorage(clock)
        registry = CollectorRegistry()
        work = FakeWork(clock) if command else None
        replica = Replica(
            settings,
            clock=clock,
            coordinator=coordinator,
            storage=storage,
            registry=registry,
            jitter=jitter,
            work=work,
        )
        if work is not None:
            work.wake = replica.ctx.wake
        return Harness(clock, zk, coordinator, storage, registry, replica, work)

    yield make


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


def other_leader(server: FakeZooKeeper, name: str = "other") -> FakeCoordinator:
    """Another replica's client that takes the leader node now."""
    other = FakeCoordinator(server)
    other.start()
    node = other.create_leader({"identity": name, "acquired_at": "then"})
    assert node is not None
    return other


def keep_publishing(harness: Harness, every: float = 10.0) -> None:
    """Another leader that works: a file appears in the shared directory every ``every`` seconds
    (the directory's publish counter moves), as a standby sees through ``storage.progress()``."""

    def publish() -> None:
        harness.storage.published_by_others += 1
        harness.clock.call_later(every, publish)

    harness.clock.call_later(0.0, publish)
