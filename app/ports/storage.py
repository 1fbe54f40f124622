"""The storage port: where the leader's work goes.

Guarantees asked of every implementation: a record is either fully written under its final name or
not there at all; nothing is published or deleted once a newer term has written or once the
caller's lease (``valid_until``, on the replica's monotonic clock) has run out; retention deletes
only files this service wrote, oldest first, never more than it must; files that are not ours are
never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """The directory cannot be used or a write failed; the message names the path and the cause."""


class FencedError(StorageError):
    """A newer leadership term has written into the directory: this writer is stale and wrote nothing."""

    def __init__(self, ours: int, newer: int) -> None:
        super().__init__(f"epoch {newer} has written; ours is {ours}")
        self.ours = ours
        self.newer = newer


class LeaseExpiredError(StorageError):
    """The lease ran out before the work could be made visible: nothing was published or deleted
    (the temporary file is removed). The caller confirms leadership again before trying again."""


@dataclass(frozen=True)
class Record:
    """One unit of leader work: what a file says."""

    identity: str
    epoch: int
    sequence: int
    written_at: str


@dataclass(frozen=True)
class Written:
    """A published file."""

    name: str  # the file's final name
    order: int  # the directory's publish counter given to this file: the real publish order
    synced: bool  # False: the file is published (linked) but the directory fsync after it failed


class Storage(Protocol):
    def prepare(self) -> int:
        """Make the directory usable: create it if missing, prove it writable with a probe, remove
        leftovers of interrupted writes. Return how many leftovers were removed."""
        ...

    def begin_term(self) -> None:
        """Re-read which of our files exist: called when a leadership term starts, because other
        replicas wrote while we were not leading. Later ticks rely on this index, not a rescan."""
        ...

    def write(self, record: Record, *, valid_until: float) -> Written:
        """Write ``record`` atomically and publish it, but only while ``monotonic() < valid_until``.

        Raise :class:`FencedError` (and publish nothing) if a newer epoch has written,
        :class:`LeaseExpiredError` (and publish nothing) if the lease ran out before the file could
        be made visible, :class:`StorageError` on any other failure before the file is published.
        Once published, the write succeeds: a failed directory fsync after it gives
        ``Written(synced=False)``, not an error.
        """
        ...

    def retain(self, capacity: int, *, epoch: int, valid_until: float) -> list[str]:
        """Delete our oldest files until at most ``capacity`` remain; return the deleted names.

        Deletes nothing and raises :class:`FencedError` if a newer epoch than ``epoch`` has written,
        :class:`LeaseExpiredError` if the lease ran out first; :class:`StorageError` if a deletion
        fails.
        """
        ...

    def progress(self) -> int | None:
        """The directory's publish counter as last recorded by any writer, read without the lock
        (a hint for standbys: has the cluster published anything lately?); None when unknown."""
        ...
