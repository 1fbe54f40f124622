"""The metrics port: what the state machine reports. ``app.adapters.prometheus_metrics`` exposes it."""

from __future__ import annotations

from typing import Protocol


class Metrics(Protocol):
    def state_entered(self, state: str, previous: str | None, since: float) -> None:
        """``state`` became current at monotonic time ``since``; count the transition from ``previous``."""
        ...

    def connection_state(self, state: str) -> None:
        """The ZooKeeper connection is now in ``state`` (a ConnectionState value)."""
        ...

    def leadership_acquired(self, epoch: int) -> None: ...

    def leadership_lost(self) -> None: ...

    def file_written(self) -> None: ...

    def files_deleted(self, count: int) -> None: ...

    def write_failed(self) -> None: ...

    def write_fenced(self) -> None:
        """A write was refused because a newer term has written (we were a stale leader)."""
        ...

    def zk_session_timeout(self, seconds: float | None) -> None:
        """The session timeout the server granted on the current connection (None: not connected;
        the last granted value stays shown)."""
        ...
