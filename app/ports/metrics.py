"""The metrics port: what the state machine reports. ``app.adapters.prometheus_metrics`` exposes it."""

from __future__ import annotations

from typing import Protocol

# Why a write or a deletion failed (the ``reason`` label of ``election_write_errors_total``):
# ``storage``: an I/O failure of a write (nothing published); ``lease_expired``: the lease ran out
# before the file was published or the old files deleted (nothing published or deleted);
# ``directory_fsync``: the file was published but the directory fsync after it failed;
# ``retention``: deleting an old file failed.
WRITE_ERROR_REASONS = ("storage", "lease_expired", "directory_fsync", "retention")
# Why a term ended, as the history records it (election_leadership_changes_total{reason}).
CHANGE_REASONS = ("graceful", "switchover", "resigned", "fenced", "work_exited", "expired")


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

    def write_failed(self, reason: str) -> None:
        """A write or a deletion failed; ``reason`` is one of :data:`WRITE_ERROR_REASONS`."""
        ...

    def write_fenced(self) -> None:
        """A write was refused because a newer term has written (we were a stale leader)."""
        ...

    def zk_session_timeout(self, seconds: float | None) -> None:
        """The session timeout the server granted on the current connection (None: not connected;
        the last granted value stays shown)."""
        ...

    def work_running(self, running: bool) -> None:
        """The leader's work began (the term's first file; the command started) or stopped (the
        term ended; the command's process group is gone)."""
        ...

    def work_exited(self, code: str) -> None:
        """The command exited by itself, with ``code`` (an exit status, or a signal's name)."""
        ...

    def work_stopped(self, signal: str) -> None:
        """We stopped the command; ``signal`` is the last one it needed (SIGTERM or SIGKILL)."""
        ...

    def leadership_changed(self, reason: str) -> None:
        """This replica's term began after another's, which ended for ``reason`` (the history's)."""
        ...
